package vhostuser

import (
	"encoding/binary"
	"errors"
	"sync/atomic"
	"unsafe"
)

// A split virtqueue (virtio 1.x §2.7): a descriptor table, the available
// ring the driver (the guest) fills, and the used ring the device (masq)
// returns buffers through. All of it lives in guest memory, which the
// guest may change at any moment: every field is read once into a local
// value, every index is checked, every address translated with bounds.

// Descriptor flags.
const (
	descNext     = 1 // VIRTQ_DESC_F_NEXT: the chain goes on at next
	descWrite    = 2 // VIRTQ_DESC_F_WRITE: the device writes the buffer
	descIndirect = 4 // VIRTQ_DESC_F_INDIRECT: not negotiated, never valid
)

// availNoInterrupt is VIRTQ_AVAIL_F_NO_INTERRUPT: the driver asks not to
// be notified (honoured when event indexes are not negotiated).
const availNoInterrupt = 1

// maxQueueSize is the largest split queue (virtio 1.x §2.7).
const maxQueueSize = 32768

const descSize = 16

// Errors of a descriptor chain: the frame is dropped and counted.
var (
	errBadIndex  = errors.New("descriptor index beyond the queue")
	errLoop      = errors.New("descriptor chain longer than the queue (a loop)")
	errIndirect  = errors.New("indirect descriptor (not negotiated)")
	errDirection = errors.New("descriptor of the wrong direction")
	errAddress   = errors.New("descriptor buffer outside guest memory")
	errTooLong   = errors.New("descriptor chain longer than any frame")
)

// vring is a started split virtqueue, its parts translated into masq's
// mappings of guest memory. The slices of avail and used start at a
// 4-byte-aligned address and end on a whole 4-byte word, so that the
// 16-bit fields the other side writes concurrently can be read and
// written with 32-bit atomics.
type vring struct {
	size     uint32 // the queue's size: a power of two, 1..32768
	desc     []byte
	avail    []byte
	availAt  int // where the avail ring starts in avail (0 or 2)
	used     []byte
	eventIdx bool

	lastAvail uint16 // the next avail entry to take
	usedIdx   uint16 // the next used entry to fill (published by publish)
	published uint16 // the used index the driver was last shown
}

// newVring translates a queue's three parts through mem: ok is false when
// one lies outside guest memory or is misaligned.
func newVring(mem *memTable, size uint32, a vringAddr, eventIdx bool) (vring, bool) {
	v := vring{size: size, eventIdx: eventIdx}
	extra := uint64(0)
	if eventIdx {
		extra = 2 // used_event after the avail ring, avail_event after the used ring
	}
	var ok bool
	if v.desc, ok = mem.uva(a.desc, uint64(size)*descSize); !ok {
		return v, false
	}
	if a.avail%2 != 0 || a.used%4 != 0 {
		return v, false
	}
	start := a.avail &^ 3
	v.availAt = int(a.avail - start)
	if v.avail, ok = mem.uva(start, roundUp4(uint64(v.availAt)+4+2*uint64(size)+extra)); !ok {
		return v, false
	}
	if v.used, ok = mem.uva(a.used, roundUp4(4+8*uint64(size)+extra)); !ok {
		return v, false
	}
	// The mappings start on a page: aligned addresses stay aligned.
	if uintptr(unsafe.Pointer(&v.avail[0]))%4 != 0 || uintptr(unsafe.Pointer(&v.used[0]))%4 != 0 {
		return v, false
	}
	return v, true
}

func roundUp4(n uint64) uint64 { return (n + 3) &^ 3 }

// load16 reads the little-endian 16-bit field at b[off] atomically (with
// acquire ordering), through the aligned 32-bit word that holds it.
func load16(b []byte, off int) uint16 {
	w := off &^ 3
	v := atomic.LoadUint32((*uint32)(unsafe.Pointer(&b[w])))
	var x [4]byte
	binary.NativeEndian.PutUint32(x[:], v)
	return binary.LittleEndian.Uint16(x[off-w:])
}

// store16 writes the 16-bit field at b[off] atomically, leaving the other
// half of its word as it is (the guest may own it): a compare-and-swap,
// which is also a full barrier.
func store16(b []byte, off int, val uint16) {
	w := off &^ 3
	p := (*uint32)(unsafe.Pointer(&b[w]))
	for {
		old := atomic.LoadUint32(p)
		var x [4]byte
		binary.NativeEndian.PutUint32(x[:], old)
		binary.LittleEndian.PutUint16(x[off-w:], val)
		if atomic.CompareAndSwapUint32(p, old, binary.NativeEndian.Uint32(x[:])) {
			return
		}
	}
}

// availIdx is the driver's avail index: how many buffers it ever offered.
func (v *vring) availIdx() uint16 { return load16(v.avail, v.availAt+2) }

// availFlags is the avail ring's flags.
func (v *vring) availFlags() uint16 { return load16(v.avail, v.availAt) }

// usedEvent is the used index after which the driver wants a notification
// (EVENT_IDX).
func (v *vring) usedEvent() uint16 { return load16(v.avail, v.availAt+4+2*int(v.size)) }

// pending returns how many buffers wait in the avail ring; ok is false
// when the driver's index is impossible (more than the queue holds).
func (v *vring) pending() (n uint16, ok bool) {
	n = v.availIdx() - v.lastAvail
	return n, uint32(n) <= v.size
}

// pop takes the next avail entry: a descriptor chain's head, unchecked.
func (v *vring) pop() uint16 {
	slot := uint32(v.lastAvail) % v.size
	v.lastAvail++
	return binary.LittleEndian.Uint16(v.avail[v.availAt+4+2*int(slot):])
}

// putUsed fills the next used entry; publish shows it to the driver.
func (v *vring) putUsed(head uint16, n uint32) {
	slot := uint32(v.usedIdx) % v.size
	b := v.used[4+8*int(slot):]
	binary.LittleEndian.PutUint32(b, uint32(head))
	binary.LittleEndian.PutUint32(b[4:], n)
	v.usedIdx++
}

// publish shows the driver the used entries filled since the last call
// and reports whether it asked to be notified of them.
func (v *vring) publish() (notify bool) {
	if v.usedIdx == v.published {
		return false
	}
	old := v.published
	// used.flags stays 0 (masq never asks the driver not to kick): the
	// word is the device's alone, and an atomic store releases the
	// entries written before it.
	var x [4]byte
	binary.LittleEndian.PutUint16(x[2:], v.usedIdx)
	atomic.StoreUint32((*uint32)(unsafe.Pointer(&v.used[0])), binary.NativeEndian.Uint32(x[:]))
	v.published = v.usedIdx
	if !v.eventIdx {
		return v.availFlags()&availNoInterrupt == 0
	}
	// vring_need_event (virtio 1.x §2.7.10): the driver's event index lies
	// in (old, new].
	return v.usedIdx-v.usedEvent()-1 < v.usedIdx-old
}

// loadUsedIdx reads the used index in guest memory (a ring restarted
// after a stop continues from it).
func (v *vring) loadUsedIdx() uint16 { return load16(v.used, 2) }

// setAvailEvent asks the driver to kick once it offers the buffer after
// idx (EVENT_IDX).
func (v *vring) setAvailEvent(idx uint16) { store16(v.used, 4+8*int(v.size), idx) }

// descriptor is one descriptor table entry, read once.
type descriptor struct {
	addr  uint64
	len   uint32
	flags uint16
	next  uint16
}

// descAt reads descriptor i, which must be below the queue's size.
func (v *vring) descAt(i uint16) descriptor {
	b := v.desc[descSize*int(i) : descSize*int(i)+descSize]
	return descriptor{addr: binary.LittleEndian.Uint64(b), len: binary.LittleEndian.Uint32(b[8:]),
		flags: binary.LittleEndian.Uint16(b[12:]), next: binary.LittleEndian.Uint16(b[14:])}
}

// chain walks a descriptor chain, checking each step.
type chain struct {
	v        *vring
	next     uint16
	count    uint32
	more     bool
	writable bool // the direction every descriptor must have
}

// chain starts a walk of the chain at head, whose descriptors must all be
// device-writable (writable) or all device-readable.
func (v *vring) chain(head uint16, writable bool) chain {
	return chain{v: v, next: head, more: true, writable: writable}
}

// step returns the chain's next descriptor; ok is false at its end. A
// descriptor that breaks a rule is an error, and so is a chain longer than
// the queue, which only a loop makes.
func (c *chain) step() (d descriptor, ok bool, err error) {
	if !c.more {
		return d, false, nil
	}
	if uint32(c.next) >= c.v.size {
		return d, false, errBadIndex
	}
	if c.count++; c.count > c.v.size {
		return d, false, errLoop
	}
	d = c.v.descAt(c.next)
	switch {
	case d.flags&descIndirect != 0:
		return d, false, errIndirect
	case (d.flags&descWrite != 0) != c.writable:
		return d, false, errDirection
	}
	c.more, c.next = d.flags&descNext != 0, d.next
	return d, true, nil
}

// chainLen walks the chain at head and returns the sum of its lengths,
// stopping with errTooLong past limit.
func (v *vring) chainLen(head uint16, writable bool, limit uint64) (uint64, error) {
	c := v.chain(head, writable)
	var total uint64
	for {
		d, ok, err := c.step()
		if err != nil {
			return total, err
		}
		if !ok {
			return total, nil
		}
		if total += uint64(d.len); total > limit {
			return total, errTooLong
		}
	}
}
