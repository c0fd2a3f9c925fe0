package vhostuser

import (
	"os"
	"runtime/debug"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// The transmit queue: frames the guest sends, copied once out of guest
// memory into the stack's buffers and delivered, their chains returned
// in one batch.

// maxFrame is the longest frame taken from the guest: a 64 KiB TSO
// segment with its Ethernet header and some slack.
const maxFrame = 1<<16 + header.EthernetMinimumSize + 256

// worker drains a queue on each of the driver's kicks until kick is
// closed.
func (d *device) worker(kick *os.File, drain func()) {
	var b [8]byte
	drain() // buffers offered before the kick fd came
	for {
		if _, err := kick.Read(b[:]); err != nil {
			return
		}
		drain()
	}
}

// drainTX takes every frame the guest offered, delivers it, returns the
// buffers and notifies the driver once, if it asked to be.
func (d *device) drainTX() {
	q := &d.queues[txQueue]
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.started {
		return
	}
	defer d.faultGuard(debug.SetPanicOnFault(true))
	r := &q.ring
	for {
		n, ok := r.pending()
		if !ok {
			d.e.stats.ringErrors.Add(1)
			break
		}
		if n == 0 {
			if !r.eventIdx {
				break
			}
			// Ask for a kick at the next buffer, then look again: the
			// driver may have added one before it saw the request.
			r.setAvailEvent(r.lastAvail)
			if n, _ = r.pending(); n == 0 {
				break
			}
			continue
		}
		for range n {
			head := r.pop()
			if uint32(head) >= r.size {
				d.e.stats.ringErrors.Add(1)
				continue // no chain to return
			}
			if q.enabled {
				d.txFrame(r, head)
			}
			r.putUsed(head, 0)
		}
		d.e.EndBurst()
		// Return each round's buffers at once: a guest that keeps
		// sending must not run out of them.
		if r.publish() {
			notify(q.call)
		}
	}
}

// notify signals an eventfd (the driver's call), if there is one.
func notify(fd int) {
	if fd >= 0 {
		writeEventfd(fd)
	}
}

// txFrame copies the frame in the chain at head out of guest memory and
// delivers it. q.mu is held.
func (d *device) txFrame(r *vring, head uint16) {
	hl := d.hdrLen()
	total, err := r.chainLen(head, false, uint64(hl+maxFrame))
	if err != nil {
		d.e.stats.fromGuestBadChain.Add(1)
		return
	}
	if total < uint64(hl+header.EthernetMinimumSize) {
		d.e.stats.fromGuestMalformed.Add(1)
		return
	}
	n := int(total) - hl
	frame := buffer.NewViewSize(min(n, buffer.MaxChunkSize))
	var tail *buffer.View
	if n > buffer.MaxChunkSize {
		tail = buffer.NewViewSize(n - buffer.MaxChunkSize)
	}
	var hdr [12]byte
	w := sink{parts: [3][]byte{hdr[:hl], frame.AsSlice(), nil}}
	if tail != nil {
		w.parts[2] = tail.AsSlice()
	}
	// The guest may have changed the chain since chainLen: the copy walks
	// it again with every check, and must fill exactly what was sized.
	if err := d.copyChain(r, head, &w); err != nil || !w.full() {
		d.e.stats.fromGuestBadChain.Add(1)
		release(frame, tail)
		return
	}
	d.e.deliver(hdr[0], frame, tail)
}

// sink is where a chain's bytes go: the parts, in order. (It keeps an
// offset rather than reslicing its parts, which would move them, and the
// header array behind the first, to the heap.)
type sink struct {
	parts [3][]byte
	i     int // the part being filled
	off   int // how much of it is
}

// write copies what fits of b and returns how much it took.
func (s *sink) write(b []byte) int {
	n := 0
	for n < len(b) && s.i < len(s.parts) {
		k := copy(s.parts[s.i][s.off:], b[n:])
		s.off += k
		n += k
		if s.off == len(s.parts[s.i]) {
			s.i, s.off = s.i+1, 0
		}
	}
	return n
}

// full says whether every part was filled.
func (s *sink) full() bool {
	for ; s.i < len(s.parts); s.i, s.off = s.i+1, 0 {
		if s.off != len(s.parts[s.i]) {
			return false
		}
	}
	return true
}

// copyChain copies the device-readable chain at head into w, walking it
// with every check and translating each buffer through guest memory; it
// stops when w is full. A chain longer than w is an error (errTooLong).
func (d *device) copyChain(r *vring, head uint16, w *sink) error {
	c := r.chain(head, false)
	for {
		desc, ok, err := c.step()
		if err != nil {
			return err
		}
		if !ok {
			return nil
		}
		addr, left := desc.addr, uint64(desc.len)
		for left > 0 {
			b := d.mem.gpaPiece(addr, left)
			if len(b) == 0 {
				return errAddress
			}
			if w.write(b) < len(b) {
				return errTooLong
			}
			addr, left = addr+uint64(len(b)), left-uint64(len(b))
		}
	}
}
