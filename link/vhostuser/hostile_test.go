package vhostuser

import (
	"encoding/binary"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/masqnet/masq/internal/vhostguest"
)

// rawGuest is a guest driver that writes its rings by hand.
type rawGuest struct {
	t      testing.TB
	f      *vhostguest.Frontend
	avail  [2]uint16 // each queue's avail index
	served *countingDispatcher
	e      *Endpoint
	path   string
}

func newRawGuest(t testing.TB) *rawGuest {
	e, d, path := listen(t)
	f := vhostguest.Dial(t, path, vhostguest.Options{})
	return &rawGuest{t: t, f: f, served: d, e: e, path: path}
}

// offer puts head in queue q's avail ring and kicks.
func (g *rawGuest) offer(q int, head uint16) {
	qq := g.f.Queues[q]
	g.f.SetAvailRing(qq, int(g.avail[q]), head)
	g.avail[q]++
	g.f.SetAvailIdx(qq, g.avail[q])
	g.f.Kick(qq)
}

// broadcastHeader is the Ethernet header of a broadcast frame of an
// unknown type.
const broadcastHeader = "\xff\xff\xff\xff\xff\xff\x52\x54\x00\x12\x34\x56\x88\xb5"

// broadcastFrame is a 60-byte broadcast Ethernet frame.
func broadcastFrame() []byte {
	f := make([]byte, 60)
	copy(f, broadcastHeader)
	return f
}

// sendGood sends one valid frame from descriptor i (header and frame in
// its buffer) and waits for masq to deliver it.
func (g *rawGuest) sendGood(i int) {
	g.t.Helper()
	q := g.f.Queues[txQueue]
	b := g.f.Buf(q, i)
	clear(b[:12])
	n := 12 + copy(b[12:], broadcastFrame())
	g.f.SetDesc(q, i, q.BufAddr(i), uint32(n), 0, 0)
	before := g.served.n.Load()
	g.offer(txQueue, uint16(i))
	waitFor(g.t, "a good frame delivered", func() bool { return g.served.n.Load() > before })
}

func TestHostileTransmitChains(t *testing.T) {
	memEnd := uint64(vhostguest.GPABase + vhostguest.MemSize)
	cases := []struct {
		name  string
		setup func(g *rawGuest, q *vhostguest.Queue) uint16 // returns the head to offer
		stat  func(Stats) uint64
	}{
		{"descriptor loop", func(g *rawGuest, q *vhostguest.Queue) uint16 {
			g.f.SetDesc(q, 5, q.BufAddr(5), 20, vhostguest.DescNext, 5)
			return 5
		}, func(s Stats) uint64 { return s.FromGuestBadChain }},
		{"two-descriptor loop", func(g *rawGuest, q *vhostguest.Queue) uint16 {
			g.f.SetDesc(q, 5, q.BufAddr(5), 0, vhostguest.DescNext, 6)
			g.f.SetDesc(q, 6, q.BufAddr(6), 0, vhostguest.DescNext, 5)
			return 5
		}, func(s Stats) uint64 { return s.FromGuestBadChain }},
		{"address below guest memory", func(g *rawGuest, q *vhostguest.Queue) uint16 {
			g.f.SetDesc(q, 5, 0x1000, 100, 0, 0)
			return 5
		}, func(s Stats) uint64 { return s.FromGuestBadChain }},
		{"buffer running past guest memory", func(g *rawGuest, q *vhostguest.Queue) uint16 {
			g.f.SetDesc(q, 5, memEnd-30, 100, 0, 0)
			return 5
		}, func(s Stats) uint64 { return s.FromGuestBadChain }},
		{"address wrapping around", func(g *rawGuest, q *vhostguest.Queue) uint16 {
			g.f.SetDesc(q, 5, ^uint64(0)-15, 100, 0, 0)
			return 5
		}, func(s Stats) uint64 { return s.FromGuestBadChain }},
		{"length past any frame", func(g *rawGuest, q *vhostguest.Queue) uint16 {
			g.f.SetDesc(q, 5, vhostguest.GPABase, ^uint32(0), 0, 0)
			return 5
		}, func(s Stats) uint64 { return s.FromGuestBadChain }},
		{"next beyond the queue", func(g *rawGuest, q *vhostguest.Queue) uint16 {
			g.f.SetDesc(q, 5, q.BufAddr(5), 20, vhostguest.DescNext, 40000)
			return 5
		}, func(s Stats) uint64 { return s.FromGuestBadChain }},
		{"device-writable buffer", func(g *rawGuest, q *vhostguest.Queue) uint16 {
			g.f.SetDesc(q, 5, q.BufAddr(5), 100, vhostguest.DescWrite, 0)
			return 5
		}, func(s Stats) uint64 { return s.FromGuestBadChain }},
		{"indirect descriptor", func(g *rawGuest, q *vhostguest.Queue) uint16 {
			g.f.SetDesc(q, 5, q.BufAddr(5), 16, 4, 0)
			return 5
		}, func(s Stats) uint64 { return s.FromGuestBadChain }},
		{"shorter than the headers", func(g *rawGuest, q *vhostguest.Queue) uint16 {
			g.f.SetDesc(q, 5, q.BufAddr(5), 20, 0, 0)
			return 5
		}, func(s Stats) uint64 { return s.FromGuestMalformed }},
		{"empty", func(g *rawGuest, q *vhostguest.Queue) uint16 {
			g.f.SetDesc(q, 5, 0, 0, 0, 0)
			return 5
		}, func(s Stats) uint64 { return s.FromGuestMalformed }},
		{"head beyond the queue", func(g *rawGuest, q *vhostguest.Queue) uint16 {
			return 300
		}, func(s Stats) uint64 { return s.RingErrors }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := newRawGuest(t)
			q := g.f.Queues[txQueue]
			head := tc.setup(g, q)
			before := tc.stat(g.e.Stats())
			g.offer(txQueue, head)
			waitFor(t, "the drop counted", func() bool { return tc.stat(g.e.Stats()) > before })
			if got := g.served.n.Load(); got != 0 {
				t.Fatalf("%d frames delivered, want 0", got)
			}
			g.sendGood(7) // still serving
		})
	}
}

// TestHostileAvailIndex: an avail index that claims more buffers than the
// queue holds is skipped, counted, and forgotten once the guest fixes it.
func TestHostileAvailIndex(t *testing.T) {
	g := newRawGuest(t)
	q := g.f.Queues[txQueue]
	g.f.SetAvailIdx(q, 5000)
	g.f.Kick(q)
	waitFor(t, "the ring error counted", func() bool { return g.e.Stats().RingErrors > 0 })
	g.f.SetAvailIdx(q, g.avail[txQueue])
	g.sendGood(3)
}

// writeFrame writes one 60-byte frame to the guest as the stack would.
func writeFrame(e *Endpoint) {
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{
		ReserveHeaderBytes: header.EthernetMinimumSize,
		Payload:            buffer.MakeWithData(make([]byte, 46)),
	})
	defer pkt.DecRef()
	pkt.NetworkProtocolNumber = header.IPv4ProtocolNumber
	e.AddHeader(pkt)
	var list stack.PacketBufferList
	list.PushBack(pkt)
	e.WritePackets(list)
}

func TestHostileReceiveChains(t *testing.T) {
	memEnd := uint64(vhostguest.GPABase + vhostguest.MemSize)
	cases := []struct {
		name  string
		setup func(g *rawGuest, q *vhostguest.Queue)
		stat  func(Stats) uint64
	}{
		{"buffer past guest memory", func(g *rawGuest, q *vhostguest.Queue) {
			g.f.SetDesc(q, 0, memEnd-20, 4096, vhostguest.DescWrite, 0)
		}, func(s Stats) uint64 { return s.ToGuestBadChain }},
		{"zero-length loop", func(g *rawGuest, q *vhostguest.Queue) {
			g.f.SetDesc(q, 0, q.BufAddr(0), 12, vhostguest.DescWrite|vhostguest.DescNext, 1)
			g.f.SetDesc(q, 1, q.BufAddr(1), 0, vhostguest.DescWrite|vhostguest.DescNext, 1)
		}, func(s Stats) uint64 { return s.ToGuestBadChain }},
		{"device-readable buffer", func(g *rawGuest, q *vhostguest.Queue) {
			g.f.SetDesc(q, 0, q.BufAddr(0), 4096, 0, 0)
		}, func(s Stats) uint64 { return s.ToGuestBadChain }},
		{"first buffer smaller than the header", func(g *rawGuest, q *vhostguest.Queue) {
			g.f.SetDesc(q, 0, q.BufAddr(0), 4, vhostguest.DescWrite|vhostguest.DescNext, 1)
			g.f.SetDesc(q, 1, q.BufAddr(1), 4096, vhostguest.DescWrite, 0)
		}, func(s Stats) uint64 { return s.ToGuestBadChain }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := newRawGuest(t)
			q := g.f.Queues[rxQueue]
			tc.setup(g, q)
			g.offer(rxQueue, 0)
			before := tc.stat(g.e.Stats())
			writeFrame(g.e)
			if got := tc.stat(g.e.Stats()); got != before+1 {
				t.Fatalf("counter %d, want %d", got, before+1)
			}
			// Still serving: a good buffer takes the next frame.
			g.f.SetDesc(q, 2, q.BufAddr(2), 4096, vhostguest.DescWrite, 0)
			used := g.f.UsedIdx(q)
			g.offer(rxQueue, 2)
			writeFrame(g.e)
			if g.f.UsedIdx(q) == used {
				t.Fatal("no buffer used after the bad one")
			}
			_, n := g.f.Used(q, g.f.UsedIdx(q)-1)
			if n != 12+60 {
				t.Fatalf("frame of %d bytes written, want %d", n, 12+60)
			}
		})
	}
}

// TestHostileMessages: requests with impossible values are refused (a
// nack) and the session goes on; malformed messages end the session, and
// the next one is served.
func TestHostileMessages(t *testing.T) {
	e, _, path := listen(t)
	f := vhostguest.Connect(t, path)
	f.Negotiate(0)
	f.Layout(vhostguest.Options{})
	f.SetMemTable()
	nack := func(what string, req uint32, payload []byte, fds ...int) {
		t.Helper()
		if ack, err := f.Send(req, payload, fds...); err != nil || ack == 0 {
			t.Errorf("%s: ack %d, err %v; want a refusal", what, ack, err)
		}
	}
	for _, num := range []int{0, 3, 65536, 1 << 31} {
		nack("queue size", vhostguest.ReqSetVringNum, vhostguest.VringState(0, num))
	}
	nack("queue index", vhostguest.ReqSetVringNum, vhostguest.VringState(7, 256))
	q := f.Queues[0]
	f.MustSend(vhostguest.ReqSetVringNum, vhostguest.VringState(0, 256))
	f.MustSend(vhostguest.ReqSetVringAddr, vhostguest.VringAddr(0, vhostguest.UVABase+64<<20-16, vhostguest.UVABase+uint64(q.Use), vhostguest.UVABase+uint64(q.Avail)))
	nack("desc table past memory", vhostguest.ReqSetVringKick, binary.LittleEndian.AppendUint64(nil, 0), q.Kick)
	f.MustSend(vhostguest.ReqSetVringAddr, vhostguest.VringAddr(0, vhostguest.UVABase+uint64(q.Desc), vhostguest.UVABase+uint64(q.Use)+2, vhostguest.UVABase+uint64(q.Avail)))
	nack("misaligned used ring", vhostguest.ReqSetVringKick, binary.LittleEndian.AppendUint64(nil, 0), q.Kick)
	nack("features not offered", vhostguest.ReqSetFeatures, binary.LittleEndian.AppendUint64(nil, 1<<63))
	nack("unknown request", 999, nil)
	if f.GetU64(vhostguest.ReqGetFeatures) == 0 {
		t.Fatal("no features after the refusals")
	}

	// Malformed: each ends its session; the next connection is served.
	malformed := []struct {
		name string
		send func(f *vhostguest.Frontend) error
	}{
		{"payload too long", func(f *vhostguest.Frontend) error {
			return f.WriteRaw(binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(
				binary.LittleEndian.AppendUint32(nil, vhostguest.ReqSetFeatures), 1), 1<<20))
		}},
		{"wrong version", func(f *vhostguest.Frontend) error {
			return f.WriteRaw(binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(
				binary.LittleEndian.AppendUint32(nil, vhostguest.ReqGetFeatures), 2), 0))
		}},
		{"nine regions", func(f *vhostguest.Frontend) error {
			r := make([]vhostguest.Region, 9)
			for i := range r {
				r[i] = vhostguest.Region{GPA: uint64(i) << 30, Size: 4096, UVA: uint64(i) << 30}
			}
			_, err := f.Send(vhostguest.ReqSetMemTable, vhostguest.MemTable(r...), f.MemFD())
			return err
		}},
		{"region without its fd", func(f *vhostguest.Frontend) error {
			_, err := f.Send(vhostguest.ReqSetMemTable, vhostguest.MemTable(vhostguest.Region{GPA: 0, Size: 4096, UVA: 0}))
			return err
		}},
		{"region past the file's end", func(f *vhostguest.Frontend) error {
			_, err := f.Send(vhostguest.ReqSetMemTable, vhostguest.MemTable(vhostguest.Region{GPA: 0, Size: 1 << 30, UVA: 0}), f.MemFD())
			return err
		}},
		{"region wrapping around", func(f *vhostguest.Frontend) error {
			_, err := f.Send(vhostguest.ReqSetMemTable, vhostguest.MemTable(vhostguest.Region{GPA: ^uint64(0) - 10, Size: 4096, UVA: 0}), f.MemFD())
			return err
		}},
	}
	f.Close()
	for _, m := range malformed {
		errs := e.Stats().SessionErrors
		f := vhostguest.Connect(t, path)
		f.Negotiate(0)
		m.send(f)
		waitFor(t, m.name+": session ended", func() bool { return e.Stats().SessionErrors > errs })
		f.Close()
	}
	// Still serving.
	f = vhostguest.Dial(t, path, vhostguest.Options{})
	vhostguest.NewDriver(t, f, 1500)
}

// TestGuestMemoryShrunk: a front-end that shrinks its memory file after
// sharing it makes masq's next access fault; the session ends, masq
// lives on and serves the next one.
func TestGuestMemoryShrunk(t *testing.T) {
	g := newRawGuest(t)
	if err := unix.Ftruncate(g.f.MemFD(), 0); err != nil {
		t.Fatal(err)
	}
	writeFrame(g.e) // reads the receive queue's avail index
	waitFor(t, "the fault counted", func() bool { return g.e.Stats().Faults > 0 })
	g.f.Kick(g.f.Queues[txQueue]) // no session left to read it
	f := vhostguest.Dial(t, g.path, vhostguest.Options{})
	vhostguest.NewDriver(t, f, 1500)
}

// TestReceiveBacklog: frames for a guest with no free receive buffer wait
// for its kick, up to rxBacklog of them; beyond, they are dropped and
// counted.
func TestReceiveBacklog(t *testing.T) {
	g := newRawGuest(t)
	q := g.f.Queues[rxQueue]
	writeFrame(g.e)
	if g.f.UsedIdx(q) != 0 {
		t.Fatal("a frame written with no buffer offered")
	}
	g.f.SetDesc(q, 0, q.BufAddr(0), 4096, vhostguest.DescWrite, 0)
	g.offer(rxQueue, 0) // kicks
	waitFor(t, "the waiting frame written", func() bool { return g.f.UsedIdx(q) == 1 })
	for range rxBacklog + 1 {
		writeFrame(g.e)
	}
	if got := g.e.Stats().ToGuestNoBuffers; got != 1 {
		t.Fatalf("ToGuestNoBuffers = %d, want 1", got)
	}
}

// TestReceiveBacklogLargeFrame: a TSO segment that needs more buffers
// than the guest offered waits, while the guest adds them one kick at a
// time, and goes out once there are enough.
func TestReceiveBacklogLargeFrame(t *testing.T) {
	g := newRawGuest(t)
	q := g.f.Queues[rxQueue]
	post := func(i int) {
		g.f.SetDesc(q, i, q.BufAddr(i), 4096, vhostguest.DescWrite, 0)
		g.offer(rxQueue, uint16(i))
	}
	post(0)
	post(1)
	pkt := packet(65000, true)
	defer pkt.DecRef()
	var list stack.PacketBufferList
	list.PushBack(pkt)
	g.e.WritePackets(list)
	for i := 2; i < 17; i++ {
		post(i) // each kicks; the worker must not spin on too few buffers
	}
	waitFor(t, "the segment written into 16 buffers", func() bool { return g.f.UsedIdx(q) == (65000+12+4095)/4096 })
	if s := g.e.Stats(); s.ToGuestNoBuffers != 0 {
		t.Fatalf("dropped: %+v", s)
	}
}

// TestQueueStopAndRestart: GET_VRING_BASE stops a queue and tells where
// its avail ring stopped; restarted at that base the queue goes on (QEMU
// stopping and starting the device), restarted at 0 on zeroed rings it
// starts over (the guest's driver reset, a reboot).
func TestQueueStopAndRestart(t *testing.T) {
	g := newRawGuest(t)
	q := g.f.Queues[txQueue]
	for i := range 3 {
		g.sendGood(i)
	}
	if base := g.f.GetVringBase(txQueue); base != 3 {
		t.Fatalf("GET_VRING_BASE = %d, want 3", base)
	}
	// Stopped: a kick moves nothing.
	before := g.served.n.Load()
	g.offer(txQueue, 5)
	time.Sleep(50 * time.Millisecond)
	if g.served.n.Load() != before {
		t.Fatal("a stopped queue delivered a frame")
	}
	g.avail[txQueue]-- // take the offer back
	g.f.SetAvailIdx(q, g.avail[txQueue])
	g.f.StartQueueAt(q, 3)
	g.sendGood(4)

	// A reset: zeroed rings, base 0.
	g.f.GetVringBase(txQueue)
	g.f.ClearRings(q)
	g.avail[txQueue] = 0
	g.f.StartQueueAt(q, 0)
	g.sendGood(0)
	if s := g.e.Stats(); s.RingErrors+s.FromGuestBadChain != 0 {
		t.Fatalf("errors counted: %+v", s)
	}
}
