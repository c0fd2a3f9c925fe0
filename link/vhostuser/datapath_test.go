package vhostuser

import (
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/masqnet/masq/internal/vhostguest"
)

// The data path measured and pinned without the kick and call eventfds:
// the test is the guest's driver and calls the queues' drains itself.

// session returns the device the Endpoint serves.
func (g *rawGuest) session() *device {
	g.e.mu.RLock()
	defer g.e.mu.RUnlock()
	return g.e.dev
}

// postFrame offers one transmit chain (descriptor i: header and frame in
// its buffer) holding a frame of n bytes; with tso, its header asks for
// TCPv4 segmentation, as a guest's TSO segment does.
func (g *rawGuest) postFrame(i, n int, tso bool) {
	q := g.f.Queues[txQueue]
	b := g.f.Buf(q, i)
	clear(b[:12])
	if tso {
		b[0], b[1] = 1, 1 // NEEDS_CSUM, GSO TCPv4
	}
	copy(b[12:], broadcastHeader)
	g.f.SetDesc(q, i, q.BufAddr(i), uint32(12+n), 0, 0)
	g.f.SetAvailRing(q, int(g.avail[txQueue]), uint16(i))
	g.avail[txQueue]++
	g.f.SetAvailIdx(q, g.avail[txQueue])
}

// postReceive offers receive buffer i.
func (g *rawGuest) postReceive(i int) {
	q := g.f.Queues[rxQueue]
	g.f.SetDesc(q, i, q.BufAddr(i), uint32(q.BufSize), vhostguest.DescWrite, 0)
	g.f.SetAvailRing(q, int(g.avail[rxQueue]), uint16(i))
	g.avail[rxQueue]++
	g.f.SetAvailIdx(q, g.avail[rxQueue])
}

// packet returns a frame of n bytes (Ethernet header included) for the
// guest; with gso, a TCPv4 segment marked for TSO at MSS 1460.
func packet(n int, gso bool) *stack.PacketBuffer {
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{
		ReserveHeaderBytes: header.EthernetMinimumSize + header.IPv4MinimumSize + header.TCPMinimumSize,
		Payload:            buffer.MakeWithData(make([]byte, n-header.EthernetMinimumSize-header.IPv4MinimumSize-header.TCPMinimumSize)),
	})
	pkt.TransportHeader().Push(header.TCPMinimumSize)
	pkt.NetworkHeader().Push(header.IPv4MinimumSize)
	pkt.LinkHeader().Push(header.EthernetMinimumSize)
	if gso {
		pkt.GSOOptions = stack.GSO{Type: stack.GSOTCPv4, NeedsCsum: true, CsumOffset: 16, MSS: 1460, L3HdrLen: header.IPv4MinimumSize}
	}
	return pkt
}

func TestTransmitDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under the race detector")
	}
	g := newRawGuest(t)
	d := g.session()
	for _, n := range []int{60, 1514, 65000} {
		allocs := testing.AllocsPerRun(200, func() {
			g.postFrame(0, n, n > 1514)
			d.drainTX()
		})
		if allocs != 0 {
			t.Errorf("frame of %d bytes: %.1f allocations per frame, want 0", n, allocs)
		}
	}
	if g.served.n.Load() == 0 {
		t.Fatal("nothing delivered")
	}
}

func TestReceiveDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under the race detector")
	}
	g := newRawGuest(t)
	for _, tc := range []struct {
		n   int
		gso bool
	}{{60, false}, {1514, false}, {65000, true}} {
		pkt := packet(tc.n, tc.gso)
		var list stack.PacketBufferList
		list.PushBack(pkt)
		allocs := testing.AllocsPerRun(200, func() {
			for i := range 17 { // 17 buffers of 4 KiB: 64 KiB merged
				g.postReceive(i)
			}
			g.e.WritePackets(list)
		})
		pkt.DecRef()
		if allocs != 0 {
			t.Errorf("frame of %d bytes: %.1f allocations per frame, want 0", tc.n, allocs)
		}
	}
	if s := g.e.Stats(); s.ToGuestNoBuffers+s.ToGuestNoGuest+s.ToGuestBadChain+s.ToGuestNoOffload != 0 {
		t.Fatalf("frames dropped: %+v", s)
	}
}

// benchBatch is how many frames the benchmarks' guest offers per kick.
const benchBatch = 64

// BenchmarkTransmit: frames from the guest, through the transmit queue,
// to the stack's dispatcher (which only counts them), benchBatch per
// drain.
func BenchmarkTransmit(b *testing.B) {
	for _, size := range []int{1514, 65000} {
		b.Run(frameName(size), func(b *testing.B) {
			g := newRawGuest(b)
			d := g.session()
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				g.postFrame(i%benchBatch, size, size > 1514)
				if i%benchBatch == benchBatch-1 || i == b.N-1 {
					d.drainTX()
				}
			}
			reportRates(b, size)
		})
	}
}

// BenchmarkReceive: frames from the stack into the guest's receive
// buffers (4 KiB, merged), one WritePackets each.
func BenchmarkReceive(b *testing.B) {
	for _, size := range []int{1514, 65000} {
		b.Run(frameName(size), func(b *testing.B) {
			g := newRawGuest(b)
			pkt := packet(size, size > 1514)
			defer pkt.DecRef()
			var list stack.PacketBufferList
			list.PushBack(pkt)
			bufs := (size + 12 + 4095) / 4096
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				for i := range bufs {
					g.postReceive(i)
				}
				g.e.WritePackets(list)
			}
			b.StopTimer()
			if s := g.e.Stats(); s.ToGuestNoBuffers != 0 {
				b.Fatalf("frames dropped: %+v", s)
			}
			reportRates(b, size)
		})
	}
}

// reportRates reports frames/s and Gbit/s.
func reportRates(b *testing.B, size int) {
	sec := b.Elapsed().Seconds()
	if sec == 0 {
		return
	}
	b.ReportMetric(float64(b.N)/sec, "frames/s")
	b.ReportMetric(float64(b.N)*float64(size)*8/sec/1e9, "Gbit/s")
}

func frameName(n int) string {
	if n > 1514 {
		return "tso64k"
	}
	return "mtu1500"
}
