package vhostguest

import (
	"encoding/binary"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The driver's side of a split virtqueue, on offsets into guest memory.
// The 16-bit indexes the back-end reads or writes concurrently go through
// 32-bit atomics on their aligned words (the rings are page-aligned).

func (f *Frontend) load16(off int) uint16 {
	w := off &^ 3
	v := atomic.LoadUint32((*uint32)(unsafe.Pointer(&f.Mem[w])))
	var x [4]byte
	binary.NativeEndian.PutUint32(x[:], v)
	return binary.LittleEndian.Uint16(x[off-w:])
}

func (f *Frontend) store16(off int, val uint16) {
	w := off &^ 3
	p := (*uint32)(unsafe.Pointer(&f.Mem[w]))
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

// Descriptor flags.
const (
	DescNext  = 1
	DescWrite = 2
)

// SetDesc writes descriptor i of q.
func (f *Frontend) SetDesc(q *Queue, i int, addr uint64, n uint32, flags, next uint16) {
	b := f.Mem[q.Desc+16*i:]
	binary.LittleEndian.PutUint64(b, addr)
	binary.LittleEndian.PutUint32(b[8:], n)
	binary.LittleEndian.PutUint16(b[12:], flags)
	binary.LittleEndian.PutUint16(b[14:], next)
}

// BufAddr is the guest-physical address of q's buffer i.
func (q *Queue) BufAddr(i int) uint64 { return GPABase + uint64(q.Bufs+i*q.BufSize) }

// Buf is q's buffer i in guest memory.
func (f *Frontend) Buf(q *Queue, i int) []byte {
	return f.Mem[q.Bufs+i*q.BufSize : q.Bufs+(i+1)*q.BufSize]
}

// AvailIdx is q's avail index.
func (f *Frontend) AvailIdx(q *Queue) uint16 { return f.load16(q.Avail + 2) }

// SetAvailRing writes avail ring entry slot.
func (f *Frontend) SetAvailRing(q *Queue, slot int, head uint16) {
	binary.LittleEndian.PutUint16(f.Mem[q.Avail+4+2*(slot%q.Size):], head)
}

// SetAvailIdx publishes q's avail index.
func (f *Frontend) SetAvailIdx(q *Queue, idx uint16) { f.store16(q.Avail+2, idx) }

// SetUsedEvent sets the used index after which the driver wants an
// interrupt (EVENT_IDX).
func (f *Frontend) SetUsedEvent(q *Queue, idx uint16) { f.store16(q.Avail+4+2*q.Size, idx) }

// UsedIdx is q's used index.
func (f *Frontend) UsedIdx(q *Queue) uint16 { return f.load16(q.Use + 2) }

// Used returns used ring entry slot: a chain's head and the length
// written.
func (f *Frontend) Used(q *Queue, slot uint16) (head uint16, n uint32) {
	b := f.Mem[q.Use+4+8*(int(slot)%q.Size):]
	return uint16(binary.LittleEndian.Uint32(b)), binary.LittleEndian.Uint32(b[4:])
}

// availEvent is the avail index after which the device wants a kick.
func (f *Frontend) availEvent(q *Queue) uint16 { return f.load16(q.Use + 4 + 8*q.Size) }

// Kick notifies the device of q.
func (f *Frontend) Kick(q *Queue) {
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	unix.Write(q.Kick, one[:])
}

// needKick says whether the device wants a kick after the avail index
// moved from old to now.
func (f *Frontend) needKick(q *Queue, old, now uint16) bool {
	if f.Features&FeatRingEventIdx == 0 {
		return true // masq never sets VRING_USED_F_NO_NOTIFY
	}
	return now-f.availEvent(q)-1 < now-old
}
