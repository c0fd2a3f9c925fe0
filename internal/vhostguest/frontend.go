// Package vhostguest plays, for masq's tests without root, the two parts
// a vhost-user back-end talks to: QEMU (the front-end, which negotiates
// over the unix socket and shares a memfd as guest memory) and the guest's
// virtio-net driver (which lays out split virtqueues in that memory, offers
// buffers and kicks). Driver bridges the rings to an in-memory guest stack
// (internal/memguest); the raw accessors let hostile-ring tests write
// whatever they like into the rings. It knows the protocol from the
// specifications alone and imports nothing of link/vhostuser, so that it
// checks masq rather than mirrors it.
package vhostguest

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Requests (QEMU docs/interop/vhost-user.rst).
const (
	ReqGetFeatures         = 1
	ReqSetFeatures         = 2
	ReqSetOwner            = 3
	ReqResetOwner          = 4
	ReqSetMemTable         = 5
	ReqSetVringNum         = 8
	ReqSetVringAddr        = 9
	ReqSetVringBase        = 10
	ReqGetVringBase        = 11
	ReqSetVringKick        = 12
	ReqSetVringCall        = 13
	ReqGetProtocolFeatures = 15
	ReqSetProtocolFeatures = 16
	ReqSetVringEnable      = 18
)

// Feature bits.
const (
	FeatNetCsum          = 1 << 0
	FeatNetGuestCsum     = 1 << 1
	FeatNetGuestTSO4     = 1 << 7
	FeatNetGuestTSO6     = 1 << 8
	FeatNetHostTSO4      = 1 << 11
	FeatNetHostTSO6      = 1 << 12
	FeatNetMrgRxbuf      = 1 << 15
	FeatRingEventIdx     = 1 << 29
	FeatProtocolFeatures = 1 << 30
	FeatVersion1         = 1 << 32

	protoReplyAck = 1 << 3
)

// AllFeatures is every feature the driver knows; Options.Features masks
// it.
const AllFeatures = FeatNetCsum | FeatNetGuestCsum | FeatNetGuestTSO4 | FeatNetGuestTSO6 |
	FeatNetHostTSO4 | FeatNetHostTSO6 | FeatNetMrgRxbuf | FeatRingEventIdx | FeatProtocolFeatures | FeatVersion1

// Guest-physical and front-end addresses of the memory's first byte:
// apart, so that a back-end translating one as the other fails.
const (
	GPABase = 0x4000_0000
	UVABase = 0x7f12_3400_0000
)

// Options shape a Frontend.
type Options struct {
	// Features the driver accepts of those offered; 0 means AllFeatures.
	Features uint64
	// QueueSize is each queue's size; 0 means 256.
	QueueSize int
	// RxBufSize is each receive buffer's size; 0 means 4096 with
	// mergeable buffers, else a whole 64 KiB frame.
	RxBufSize int
}

// Frontend is one vhost-user session with guest memory and two queues.
type Frontend struct {
	tb       testing.TB
	conn     *net.UnixConn
	memfd    int
	Mem      []byte // guest memory, from GPABase
	Features uint64 // negotiated
	Queues   [2]*Queue
	ack      bool // REPLY_ACK negotiated
}

// Queue is one split virtqueue's layout in Mem (offsets) and eventfds.
type Queue struct {
	Index            int
	Size             int
	Desc, Avail, Use int // offsets in Mem
	Bufs, BufSize    int // the buffers, one per descriptor
	Kick, Call       int // eventfds
}

// MemSize is the guest memory: rings and buffers of two queues of 256
// entries (the transmit buffers 64 KiB each) fit with room to spare.
const MemSize = 64 << 20

// Dial connects to a back-end at path and sets up the device as QEMU
// does, the queues started and enabled. Everything is released when the
// test ends; Close ends the session earlier.
func Dial(tb testing.TB, path string, opts Options) *Frontend {
	tb.Helper()
	f := Connect(tb, path)
	f.Negotiate(opts.Features)
	f.Layout(opts)
	f.SetMemTable()
	for _, q := range f.Queues {
		f.StartQueue(q)
	}
	return f
}

// Connect connects to path and maps the guest memory, negotiating
// nothing yet.
func Connect(tb testing.TB, path string) *Frontend {
	tb.Helper()
	var c net.Conn
	var err error
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if c, err = net.Dial("unix", path); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		tb.Fatalf("connect to the back-end: %v", err)
	}
	memfd, err := unix.MemfdCreate("vhostguest", unix.MFD_CLOEXEC)
	if err != nil {
		tb.Fatalf("memfd: %v", err)
	}
	if err := unix.Ftruncate(memfd, MemSize); err != nil {
		tb.Fatalf("memfd size: %v", err)
	}
	mem, err := unix.Mmap(memfd, 0, MemSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		tb.Fatalf("mmap guest memory: %v", err)
	}
	f := &Frontend{tb: tb, conn: c.(*net.UnixConn), memfd: memfd, Mem: mem}
	tb.Cleanup(func() {
		f.Close()
		for _, q := range f.Queues {
			if q != nil {
				unix.Close(q.Kick)
				unix.Close(q.Call)
			}
		}
		unix.Munmap(mem)
		unix.Close(memfd)
	})
	return f
}

// Close ends the session (the back-end sees the connection end).
func (f *Frontend) Close() { f.conn.Close() }

// Negotiate exchanges features (those offered and wanted; 0 means
// AllFeatures) and protocol features (REPLY_ACK when offered).
func (f *Frontend) Negotiate(want uint64) {
	f.tb.Helper()
	if want == 0 {
		want = AllFeatures
	}
	offered := f.GetU64(ReqGetFeatures)
	f.Features = offered & want
	f.MustSend(ReqSetFeatures, u64(f.Features))
	if f.Features&FeatProtocolFeatures != 0 {
		p := f.GetU64(ReqGetProtocolFeatures) & protoReplyAck
		f.MustSend(ReqSetProtocolFeatures, u64(p))
		f.ack = p != 0
	}
	f.MustSend(ReqSetOwner, nil)
}

// Layout places the queues and their buffers in guest memory.
func (f *Frontend) Layout(opts Options) {
	size := opts.QueueSize
	if size == 0 {
		size = 256
	}
	rxBuf := opts.RxBufSize
	if rxBuf == 0 {
		rxBuf = 4096
		if f.Features&FeatNetMrgRxbuf == 0 {
			rxBuf = 12 + 1<<16 + 256
		}
	}
	at := 4096 // leave the first page unused
	page := func(n int) int { o := at; at += (n + 4095) &^ 4095; return o }
	for i := range f.Queues {
		q := &Queue{Index: i, Size: size}
		q.Desc = page(16 * size)
		q.Avail = page(6 + 2*size)
		q.Use = page(6 + 8*size)
		q.BufSize = rxBuf
		if i == 1 {
			q.BufSize = 12 + 1<<16 + 256
		}
		q.Bufs = page(size * q.BufSize)
		if at > len(f.Mem) {
			f.tb.Fatalf("queues of %d entries do not fit guest memory", size)
		}
		var err error
		if q.Kick, err = unix.Eventfd(0, unix.EFD_CLOEXEC); err != nil {
			f.tb.Fatal(err)
		}
		if q.Call, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
			f.tb.Fatal(err)
		}
		f.Queues[i] = q
	}
}

// SetMemTable shares the guest memory as one region.
func (f *Frontend) SetMemTable() {
	f.tb.Helper()
	f.MustSendFDs(ReqSetMemTable, MemTable(Region{GPA: GPABase, Size: uint64(len(f.Mem)), UVA: UVABase}), f.memfd)
}

// Region is one memory table entry.
type Region struct{ GPA, Size, UVA, Offset uint64 }

// MemTable encodes a memory table payload.
func MemTable(regions ...Region) []byte {
	b := binary.LittleEndian.AppendUint32(nil, uint32(len(regions)))
	b = binary.LittleEndian.AppendUint32(b, 0)
	for _, r := range regions {
		for _, v := range []uint64{r.GPA, r.Size, r.UVA, r.Offset} {
			b = binary.LittleEndian.AppendUint64(b, v)
		}
	}
	return b
}

// MemFD returns the guest memory's memfd (for a test's own memory table).
func (f *Frontend) MemFD() int { return f.memfd }

// StartQueue sets a queue's size, addresses, base (0), call and kick,
// and enables it.
func (f *Frontend) StartQueue(q *Queue) { f.tb.Helper(); f.StartQueueAt(q, 0) }

// StartQueueAt is StartQueue with the avail ring resuming at base, as
// QEMU restarts a queue it stopped with GET_VRING_BASE.
func (f *Frontend) StartQueueAt(q *Queue, base int) {
	f.tb.Helper()
	f.MustSend(ReqSetVringNum, VringState(q.Index, q.Size))
	f.MustSend(ReqSetVringAddr, VringAddr(q.Index, UVABase+uint64(q.Desc), UVABase+uint64(q.Use), UVABase+uint64(q.Avail)))
	f.MustSend(ReqSetVringBase, VringState(q.Index, base))
	f.MustSendFDs(ReqSetVringCall, u64(uint64(q.Index)), q.Call)
	f.MustSendFDs(ReqSetVringKick, u64(uint64(q.Index)), q.Kick)
	if f.Features&FeatProtocolFeatures != 0 {
		f.MustSend(ReqSetVringEnable, VringState(q.Index, 1))
	}
}

// VringState encodes a vring state payload.
func VringState(index, num int) []byte {
	b := binary.LittleEndian.AppendUint32(nil, uint32(index))
	return binary.LittleEndian.AppendUint32(b, uint32(num))
}

// VringAddr encodes a vring address payload (front-end addresses).
func VringAddr(index int, desc, used, avail uint64) []byte {
	b := binary.LittleEndian.AppendUint32(nil, uint32(index))
	b = binary.LittleEndian.AppendUint32(b, 0)
	for _, v := range []uint64{desc, used, avail, 0} {
		b = binary.LittleEndian.AppendUint64(b, v)
	}
	return b
}

func u64(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }

// GetU64 sends a request whose reply is a u64 and returns it.
func (f *Frontend) GetU64(req uint32) uint64 {
	f.tb.Helper()
	if err := f.write(req, 0, nil); err != nil {
		f.tb.Fatal(err)
	}
	p, err := f.readReply(req)
	if err != nil || len(p) != 8 {
		f.tb.Fatalf("request %d: reply %x: %v", req, p, err)
	}
	return binary.LittleEndian.Uint64(p)
}

// GetVringBase stops a queue and returns its base.
func (f *Frontend) GetVringBase(index int) int {
	f.tb.Helper()
	if err := f.write(ReqGetVringBase, 0, VringState(index, 0)); err != nil {
		f.tb.Fatal(err)
	}
	p, err := f.readReply(ReqGetVringBase)
	if err != nil || len(p) != 8 {
		f.tb.Fatalf("GET_VRING_BASE: reply %x: %v", p, err)
	}
	return int(binary.LittleEndian.Uint32(p[4:]))
}

// ClearRings zeroes q's rings, as a guest's driver lays them out afresh
// after a device reset.
func (f *Frontend) ClearRings(q *Queue) {
	clear(f.Mem[q.Desc : q.Desc+16*q.Size])
	clear(f.Mem[q.Avail : q.Avail+6+2*q.Size])
	clear(f.Mem[q.Use : q.Use+6+8*q.Size])
}

// MustSend sends a request and, with REPLY_ACK, fails the test unless
// the back-end acks it.
func (f *Frontend) MustSend(req uint32, payload []byte) { f.tb.Helper(); f.MustSendFDs(req, payload) }

// MustSendFDs is MustSend with file descriptors.
func (f *Frontend) MustSendFDs(req uint32, payload []byte, fds ...int) {
	f.tb.Helper()
	if ack, err := f.Send(req, payload, fds...); err != nil || ack != 0 {
		f.tb.Fatalf("request %d: ack %d, err %v", req, ack, err)
	}
}

// Send sends a request and, with REPLY_ACK negotiated, returns the
// back-end's ack (0: success); without it, 0.
func (f *Frontend) Send(req uint32, payload []byte, fds ...int) (uint64, error) {
	flags := uint32(0)
	if f.ack {
		flags = 0x8
	}
	if err := f.write(req, flags, payload, fds...); err != nil {
		return 0, err
	}
	if !f.ack {
		return 0, nil
	}
	p, err := f.readReply(req)
	if err != nil {
		return 0, err
	}
	if len(p) != 8 {
		return 0, fmt.Errorf("ack of %d bytes", len(p))
	}
	return binary.LittleEndian.Uint64(p), nil
}

// WriteRaw writes bytes to the socket as they are, with fds: a test's
// malformed message.
func (f *Frontend) WriteRaw(b []byte, fds ...int) error {
	_, _, err := f.conn.WriteMsgUnix(b, unix.UnixRights(fds...), nil)
	return err
}

func (f *Frontend) write(req, flags uint32, payload []byte, fds ...int) error {
	b := binary.LittleEndian.AppendUint32(nil, req)
	b = binary.LittleEndian.AppendUint32(b, 1|flags)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(payload)))
	b = append(b, payload...)
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	f.conn.SetDeadline(time.Now().Add(10 * time.Second))
	_, _, err := f.conn.WriteMsgUnix(b, oob, nil)
	return err
}

// readReply reads the reply to req.
func (f *Frontend) readReply(req uint32) ([]byte, error) {
	var h [12]byte
	f.conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(f.conn, h[:]); err != nil {
		return nil, fmt.Errorf("read reply to %d: %w", req, err)
	}
	if got := binary.LittleEndian.Uint32(h[:]); got != req || binary.LittleEndian.Uint32(h[4:])&0x4 == 0 {
		return nil, fmt.Errorf("reply header %x to request %d", h, req)
	}
	p := make([]byte, binary.LittleEndian.Uint32(h[8:]))
	_, err := io.ReadFull(f.conn, p)
	return p, err
}
