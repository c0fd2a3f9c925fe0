package vhostuser

import (
	"encoding/binary"
	"runtime/debug"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/masqnet/masq/link"
)

// The receive queue: frames for the guest, copied once into the buffers
// it offered, after their virtio-net header; with mergeable buffers a
// frame spans as many as it needs.

// rxBacklog is how many frames wait for receive buffers when the guest
// has none free: as deep as a tap's queue (txqueuelen 1000), so that a
// burst of TSO segments larger than the ring (256 buffers of 4 KiB hold
// 15 of them) waits for the guest to catch up instead of being dropped
// and retransmitted. The frames share their memory with the stack's send
// queues, which bound it.
const rxBacklog = 1024

// backlog is a FIFO of frames waiting for receive buffers, each holding
// a reference. Its array is allocated once per session.
type backlog struct {
	pkts       []*stack.PacketBuffer // rxBacklog slots
	head, size int
}

func (b *backlog) push(pkt *stack.PacketBuffer) bool {
	if b.pkts == nil {
		b.pkts = make([]*stack.PacketBuffer, rxBacklog)
	}
	if b.size == len(b.pkts) {
		return false
	}
	b.pkts[(b.head+b.size)%len(b.pkts)] = pkt.IncRef()
	b.size++
	return true
}

func (b *backlog) front() *stack.PacketBuffer { return b.pkts[b.head] }

func (b *backlog) pop() {
	b.pkts[b.head].DecRef()
	b.pkts[b.head] = nil
	b.head = (b.head + 1) % len(b.pkts)
	b.size--
}

// clear drops every frame, returning how many there were.
func (b *backlog) clear() int {
	n := b.size
	for b.size > 0 {
		b.pop()
	}
	return n
}

// writePackets writes frames into the guest's receive buffers, after the
// frames already waiting, and notifies the guest once for the batch. A
// frame with no buffer to take it waits in the backlog for the guest's
// kick; when that is full, it is dropped and counted. It returns false
// when the receive queue does not run (nothing written, nothing counted).
func (d *device) writePackets(pkts []*stack.PacketBuffer) bool {
	q := &d.queues[rxQueue]
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.started || !q.enabled {
		return false
	}
	defer d.faultGuard(debug.SetPanicOnFault(true))
	r := &q.ring
	d.flushBacklog(r)
	for _, pkt := range pkts {
		if d.rxWait.size > 0 || d.rxFrame(r, pkt) == rxNoBuffer {
			if !d.rxWait.push(pkt) {
				d.e.stats.toGuestNoBuffers.Add(1)
			}
		}
	}
	d.waitForBuffers(r)
	if r.publish() {
		notify(q.call)
	}
	return true
}

// drainRX writes the frames waiting in the backlog, on the guest's kick
// (new receive buffers).
func (d *device) drainRX() {
	q := &d.queues[rxQueue]
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.started || !q.enabled {
		return
	}
	defer d.faultGuard(debug.SetPanicOnFault(true))
	r := &q.ring
	d.flushBacklog(r)
	d.waitForBuffers(r)
	if r.publish() {
		notify(q.call)
	}
}

// flushBacklog writes the waiting frames while buffers last.
func (d *device) flushBacklog(r *vring) {
	for d.rxWait.size > 0 && d.rxFrame(r, d.rxWait.front()) != rxNoBuffer {
		d.rxWait.pop()
	}
}

// waitForBuffers, when frames wait, asks the guest to kick at its next
// receive buffer (EVENT_IDX; without it, the guest kicks at every one),
// then writes the frames that buffers offered meanwhile take. It stops
// when a frame still finds too few: the next kick retries.
func (d *device) waitForBuffers(r *vring) {
	for d.rxWait.size > 0 && r.eventIdx {
		r.setAvailEvent(r.lastAvail)
		if n, ok := r.pending(); !ok || n == 0 {
			return
		}
		waiting := d.rxWait.size
		if d.flushBacklog(r); d.rxWait.size == waiting {
			return
		}
	}
}

// rxResult is what became of a frame for the guest.
type rxResult int

const (
	rxDone     rxResult = iota // written, or dropped and counted
	rxNoBuffer                 // no receive buffer: nothing written
)

// rxFrame writes one frame. A frame that does not fit the buffers offered
// is dropped and counted, and the buffers stay offered.
func (d *device) rxFrame(r *vring, pkt *stack.PacketBuffer) rxResult {
	if !d.offloadsFor(pkt) {
		d.e.stats.toGuestNoOffload.Add(1)
		return rxDone
	}
	hl := d.hdrLen()
	var hdr [12]byte
	link.EncodeVirtioNetHeader(hdr[:link.VirtioNetHeaderSize], pkt)
	src := newPacketReader(hdr[:hl], pkt)
	merge := d.features&featNetMrgRxbuf != 0
	availAt, usedAt := r.lastAvail, r.usedIdx
	var first []byte // the first buffer's header, for num_buffers
	nbufs := uint16(0)
	for src.left > 0 {
		if nbufs > 0 && !merge {
			// One buffer, too small: leave it for a smaller frame.
			r.lastAvail, r.usedIdx = availAt, usedAt
			d.e.stats.toGuestNoBuffers.Add(1)
			return rxDone
		}
		if n, ok := r.pending(); !ok || n == 0 {
			r.lastAvail, r.usedIdx = availAt, usedAt
			if !ok {
				d.e.stats.ringErrors.Add(1)
				return rxDone
			}
			return rxNoBuffer
		}
		head := r.pop()
		if uint32(head) >= r.size {
			d.e.stats.ringErrors.Add(1)
			d.returnEmpty(r, availAt, usedAt)
			return rxDone
		}
		want := 0 // the first buffer holds the header
		if nbufs == 0 {
			want = hl
		}
		n, hb, err := d.fillChain(r, head, &src, want)
		if err != nil {
			d.e.stats.toGuestBadChain.Add(1)
			d.returnEmpty(r, availAt, usedAt)
			return rxDone
		}
		if nbufs == 0 {
			first = hb
		}
		r.putUsed(head, n)
		nbufs++
	}
	if hl == 12 {
		binary.LittleEndian.PutUint16(first[10:], nbufs)
	}
	return rxDone
}

// returnEmpty drops the frame being written: every chain popped for it
// (since the avail and used indexes stood at availAt and usedAt) goes back
// to the guest empty, to be dropped there; a head beyond the queue,
// which names no chain, is skipped.
func (d *device) returnEmpty(r *vring, availAt, usedAt uint16) {
	end := r.lastAvail
	r.lastAvail, r.usedIdx = availAt, usedAt
	for r.lastAvail != end {
		if head := r.pop(); uint32(head) < r.size {
			r.putUsed(head, 0)
		}
	}
}

// offloadsFor says whether the guest negotiated what pkt needs: TSO for
// a segment larger than its MSS, checksum offload for a partial checksum.
func (d *device) offloadsFor(pkt *stack.PacketBuffer) bool {
	gso := pkt.GSOOptions
	if gso.Type == stack.GSONone {
		return true
	}
	if gso.NeedsCsum && d.features&featNetGuestCsum == 0 {
		return false
	}
	if uint16(pkt.Data().Size()) <= gso.MSS {
		return true
	}
	switch gso.Type {
	case stack.GSOTCPv4:
		return d.features&featNetGuestTSO4 != 0
	case stack.GSOTCPv6:
		return d.features&featNetGuestTSO6 != 0
	}
	return false
}

// fillChain copies what fits of src into the device-writable chain at
// head and returns how many bytes it wrote. With hdrLen > 0, the chain's
// first buffer must hold that whole virtio-net header, which hdr returns
// (for num_buffers).
func (d *device) fillChain(r *vring, head uint16, src *packetReader, hdrLen int) (n uint32, hdr []byte, err error) {
	first := hdrLen > 0
	c := r.chain(head, true)
	for src.left > 0 {
		desc, ok, err := c.step()
		if err != nil {
			return n, hdr, err
		}
		if !ok {
			return n, hdr, nil
		}
		if first {
			var ok bool
			if hdr, ok = d.mem.gpa(desc.addr, uint64(hdrLen)); !ok || uint64(desc.len) < uint64(hdrLen) {
				return n, hdr, errAddress
			}
			first = false
		}
		addr, left := desc.addr, uint64(desc.len)
		for left > 0 && src.left > 0 {
			b := d.mem.gpaPiece(addr, left)
			if len(b) == 0 {
				return n, hdr, errAddress
			}
			k := src.read(b)
			n += uint32(k)
			addr, left = addr+uint64(k), left-uint64(k)
		}
	}
	return n, hdr, nil
}

// packetReader reads a frame's bytes in order: its virtio-net header,
// then the packet's views, in place (AsSlices would allocate).
type packetReader struct {
	rest []byte       // what is left of the header or the current view
	next *buffer.View // the view after rest
	skip int          // bytes consumed from the packet's front, to skip
	left int          // bytes left in all
}

func newPacketReader(hdr []byte, pkt *stack.PacketBuffer) packetReader {
	views, offset := pkt.AsViewList()
	return packetReader{rest: hdr, next: views.Front(), skip: offset, left: len(hdr) + pkt.Size()}
}

// read copies the next bytes into dst and returns how many.
func (r *packetReader) read(dst []byte) int {
	n := 0
	for n < len(dst) && r.left > 0 {
		if len(r.rest) == 0 {
			if r.next == nil {
				r.left = 0 // shorter than its size said: never, in gVisor
				break
			}
			b := r.next.AsSlice()
			r.next = r.next.Next()
			if r.skip >= len(b) {
				r.skip -= len(b)
				continue
			}
			r.rest, r.skip = b[r.skip:], 0
		}
		k := copy(dst[n:], r.rest)
		r.rest = r.rest[k:]
		n += k
		r.left -= k
	}
	return n
}
