package link

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

func TestEncodeVnetHdr(t *testing.T) {
	tests := []struct {
		name                       string
		gso                        stack.GSO
		payload                    int
		flags, gsoType             byte
		hdrLen, gsoSize, csumStart uint16
	}{
		{name: "no GSO: all zero", payload: 100},
		{name: "TCPv4 segment larger than MSS", payload: 30000,
			gso:   stack.GSO{Type: stack.GSOTCPv4, NeedsCsum: true, CsumOffset: 16, MSS: 1448, L3HdrLen: 20},
			flags: vnetFlagNeedsCsum, gsoType: vnetGSOTCPv4, hdrLen: 54, gsoSize: 1448, csumStart: 34},
		{name: "TCPv6 segment within MSS: checksum only", payload: 1000,
			gso:   stack.GSO{Type: stack.GSOTCPv6, NeedsCsum: true, CsumOffset: 16, MSS: 1428, L3HdrLen: 40},
			flags: vnetFlagNeedsCsum, gsoType: vnetGSONone, hdrLen: 74, csumStart: 54},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{
				ReserveHeaderBytes: 128,
				Payload:            buffer.MakeWithData(make([]byte, tt.payload)),
			})
			defer pkt.DecRef()
			if tt.gso.Type != stack.GSONone {
				pkt.TransportHeader().Push(header.TCPMinimumSize)
				pkt.NetworkHeader().Push(int(tt.gso.L3HdrLen))
				pkt.LinkHeader().Push(header.EthernetMinimumSize)
			}
			pkt.GSOOptions = tt.gso
			var hdr [vnetHdrSize]byte
			encodeVnetHdr(hdr[:], pkt)
			got := struct {
				flags, gsoType             byte
				hdrLen, gsoSize, csumStart uint16
			}{hdr[0], hdr[1], binary.LittleEndian.Uint16(hdr[2:]), binary.LittleEndian.Uint16(hdr[4:]), binary.LittleEndian.Uint16(hdr[6:])}
			if got.flags != tt.flags || got.gsoType != tt.gsoType || got.hdrLen != tt.hdrLen || got.gsoSize != tt.gsoSize || got.csumStart != tt.csumStart {
				t.Fatalf("header = %+v, want flags %d type %d hdrLen %d gsoSize %d csumStart %d",
					got, tt.flags, tt.gsoType, tt.hdrLen, tt.gsoSize, tt.csumStart)
			}
		})
	}
}

// vnetPair returns a vnet link on one end of a socketpair (which keeps
// frame boundaries as a tap does) and the other end, for the test to read.
func vnetPair(t *testing.T) (*Vnet, int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
	ep, err := NewVnet(fds[0], 1500, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ep.Close)
	return ep, fds[1]
}

// manyViews returns a packet whose payload is data in views of size bytes
// each, behind an Ethernet header, as gVisor builds a TSO segment out of
// many small writes.
func manyViews(data []byte, size int) *stack.PacketBuffer {
	var payload buffer.Buffer
	for b := data; len(b) > 0; b = b[min(size, len(b)):] {
		payload.Append(buffer.NewViewWithData(b[:min(size, len(b))]))
	}
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{ReserveHeaderBytes: header.EthernetMinimumSize, Payload: payload})
	eth := header.Ethernet(pkt.LinkHeader().Push(header.EthernetMinimumSize))
	eth.Encode(&header.EthernetFields{Type: header.IPv4ProtocolNumber})
	return pkt
}

func TestVnetWritesPacketsOfAnyViewCount(t *testing.T) {
	for _, views := range []int{1, maxIovecs - 2, maxIovecs - 1, maxIovecs, 655, 1100} {
		t.Run(fmt.Sprint(views), func(t *testing.T) {
			l, peer := vnetPair(t)
			data := make([]byte, views*100)
			rand.Read(data)
			pkt := manyViews(data, 100)
			defer pkt.DecRef()
			var pkts stack.PacketBufferList
			pkts.PushBack(pkt)
			if n, err := l.WritePackets(pkts); n != 1 || err != nil {
				t.Fatalf("WritePackets = %d, %v; want 1, nil", n, err)
			}
			got := make([]byte, vnetHdrSize+header.EthernetMinimumSize+len(data)+1)
			n, err := unix.Read(peer, got)
			if err != nil {
				t.Fatal(err)
			}
			if want := vnetHdrSize + header.EthernetMinimumSize + len(data); n != want {
				t.Fatalf("frame of %d bytes, want %d", n, want)
			}
			if !bytes.Equal(got[vnetHdrSize+header.EthernetMinimumSize:n], data) {
				t.Fatal("frame payload differs from the packet's")
			}
		})
	}
}

func TestVnetCountsFullQueue(t *testing.T) {
	l, _ := vnetPair(t)
	pkt := manyViews(make([]byte, 1000), 1000)
	defer pkt.DecRef()
	var pkts stack.PacketBufferList
	pkts.PushBack(pkt)
	// Nobody reads the peer: the socket's queue fills, as a tap's does
	// when the guest stops reading.
	for i := 0; i < 100000 && l.Stats().TxQueueFull == 0; i++ {
		l.WritePackets(pkts)
	}
	if s := l.Stats(); s.TxQueueFull == 0 || s.TxErrors != 0 {
		t.Fatalf("stats after filling the queue = %+v, want TxQueueFull > 0 and no errors", s)
	}
}

func BenchmarkVnetWriteManyViews(b *testing.B) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	unix.SetsockoptInt(fds[0], unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20)
	ep, err := NewVnet(fds[0], 1500, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer ep.Close()
	l := ep
	for _, views := range []int{16, 655} {
		b.Run(fmt.Sprint(views), func(b *testing.B) {
			pkt := manyViews(make([]byte, 65000), 65000/views)
			defer pkt.DecRef()
			var pkts stack.PacketBufferList
			pkts.PushBack(pkt)
			buf := make([]byte, 1<<17)
			b.SetBytes(65000)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := l.WritePackets(pkts); err != nil {
					b.Fatal(err)
				}
				unix.Read(fds[1], buf)
			}
		})
	}
}

// countingDispatcher counts the packets a link delivers.
type countingDispatcher struct{ delivered chan struct{} }

func (d *countingDispatcher) DeliverNetworkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {
	d.delivered <- struct{}{}
}

func (d *countingDispatcher) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {}

func TestVnetVerifiesChecksumsNothingVouchesFor(t *testing.T) {
	tests := []struct {
		name    string
		flags   byte
		corrupt bool
		deliver bool
	}{
		{"right checksums", 0, false, true},
		{"wrong checksum", 0, true, false},
		{"wrong but partial (NEEDS_CSUM)", vnetFlagNeedsCsum, true, true},
		{"wrong but verified (DATA_VALID)", vnetFlagDataValid, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, peer := vnetPair(t)
			d := &countingDispatcher{delivered: make(chan struct{}, 1)}
			l.Attach(d)
			defer l.Attach(nil)
			frame, _ := testFrame{proto: header.TCPProtocolNumber}.build()
			copy(frame, header.EthernetBroadcastAddress)
			if tt.corrupt {
				frame[len(frame)-1] ^= 1
			}
			hdr := make([]byte, vnetHdrSize)
			hdr[0] = tt.flags
			if _, err := unix.Write(peer, append(hdr, frame...)); err != nil {
				t.Fatal(err)
			}
			if tt.deliver {
				select {
				case <-d.delivered:
				case <-time.After(5 * time.Second):
					t.Fatal("frame not delivered within 5s")
				}
			} else {
				deadline := time.Now().Add(5 * time.Second)
				for l.Stats().RxBadChecksum == 0 && time.Now().Before(deadline) {
					time.Sleep(time.Millisecond)
				}
				select {
				case <-d.delivered:
					t.Fatal("frame with a wrong checksum delivered")
				default:
				}
			}
			if bad := l.Stats().RxBadChecksum; bad != b2u(!tt.deliver) {
				t.Fatalf("RxBadChecksum = %d, want %d", bad, b2u(!tt.deliver))
			}
		})
	}
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// TestVnetWriteDoesNotAllocate pins writePacket's claim: a 64 KiB TSO
// segment goes to the tap without allocating, in place when it has few
// views and through the pooled copy buffer when it has more than
// maxIovecs. AllocsPerRun's warm-up run fills the pool; sync.Pool may still
// drop the buffer now and then (at a GC, or at random under -race), which
// AllocsPerRun's per-run average absorbs, but an allocation on every write
// does not pass.
func TestVnetWriteDoesNotAllocate(t *testing.T) {
	l, peer := vnetPair(t)
	const size = 65000 // a TSO segment as gVisor builds them: within vnetGSOMaxSize
	for _, views := range []int{16, 655} {
		t.Run(fmt.Sprint(views, " views"), func(t *testing.T) {
			pkt := manyViews(make([]byte, size), size/views)
			defer pkt.DecRef()
			pkt.GSOOptions = stack.GSO{Type: stack.GSOTCPv4, NeedsCsum: true, CsumOffset: 16, MSS: 1448, L3HdrLen: 20}
			var pkts stack.PacketBufferList
			pkts.PushBack(pkt)
			buf := make([]byte, vnetHdrSize+maxFrame)
			allocs := testing.AllocsPerRun(100, func() {
				if n, err := l.WritePackets(pkts); n != 1 || err != nil {
					t.Fatalf("WritePackets = %d, %v; want 1, nil", n, err)
				}
				if n, err := unix.Read(peer, buf); n != vnetHdrSize+header.EthernetMinimumSize+size || err != nil {
					t.Fatalf("peer read %d, %v; want %d bytes", n, err, vnetHdrSize+header.EthernetMinimumSize+size)
				}
			})
			if allocs != 0 {
				t.Errorf("WritePackets of a %d-byte segment in %d views: %v allocations per write, want 0", size, views, allocs)
			}
		})
	}
}

// TestVnetReaderRestarts checks that the reader, which waits in the
// runtime's poller, stops on Attach(nil) (a frame then stays unread) and
// serves the next dispatcher.
func TestVnetReaderRestarts(t *testing.T) {
	l, peer := vnetPair(t)
	frame, _ := testFrame{proto: header.TCPProtocolNumber}.build()
	copy(frame, header.EthernetBroadcastAddress)
	msg := append(make([]byte, vnetHdrSize), frame...)
	for i := 0; i < 2; i++ {
		d := &countingDispatcher{delivered: make(chan struct{}, 1)}
		l.Attach(d)
		if _, err := unix.Write(peer, msg); err != nil {
			t.Fatal(err)
		}
		select {
		case <-d.delivered:
		case <-time.After(5 * time.Second):
			t.Fatalf("attach %d: frame not delivered within 5s", i)
		}
		l.Attach(nil)
		if l.IsAttached() {
			t.Fatal("attached after Attach(nil)")
		}
	}
	// Stopped: a frame written now is not read.
	if _, err := unix.Write(peer, msg); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	var buf [2048]byte
	if n, err := unix.Read(l.fd, buf[:]); err != nil || n != len(msg) {
		t.Fatalf("frame after Attach(nil): read %d, %v; want it left for us (%d bytes)", n, err, len(msg))
	}
}

func TestIsSynAck(t *testing.T) {
	for _, tt := range []struct {
		proto tcpip.TransportProtocolNumber
		flags header.TCPFlags
		want  bool
	}{
		{header.TCPProtocolNumber, header.TCPFlagSyn | header.TCPFlagAck, true},
		{header.TCPProtocolNumber, header.TCPFlagSyn, false},
		{header.TCPProtocolNumber, header.TCPFlagAck, false},
		{header.TCPProtocolNumber, header.TCPFlagAck | header.TCPFlagPsh, false},
		{header.UDPProtocolNumber, header.TCPFlagSyn | header.TCPFlagAck, false},
	} {
		pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{ReserveHeaderBytes: header.TCPMinimumSize})
		h := header.TCP(pkt.TransportHeader().Push(header.TCPMinimumSize))
		h.Encode(&header.TCPFields{DataOffset: header.TCPMinimumSize, Flags: tt.flags})
		pkt.TransportProtocolNumber = tt.proto
		if got := isSynAck(pkt); got != tt.want {
			t.Errorf("isSynAck(proto %d, flags %s) = %v, want %v", tt.proto, tt.flags, got, tt.want)
		}
		pkt.DecRef()
	}
}

// TestVnetReadDoesNotAllocate pins the reader's per-frame path: waiting in
// the runtime's poller, reading, delivering (gVisor's packet buffers are
// pooled) allocates nothing.
func TestVnetReadDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	l, peer := vnetPair(t)
	d := &countingDispatcher{delivered: make(chan struct{}, 1)}
	l.Attach(d)
	defer l.Attach(nil)
	frame, _ := testFrame{proto: header.TCPProtocolNumber}.build()
	copy(frame, header.EthernetBroadcastAddress)
	msg := append(make([]byte, vnetHdrSize), frame...)
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := unix.Write(peer, msg); err != nil {
			t.Fatal(err)
		}
		<-d.delivered
	})
	if allocs >= 1 {
		t.Errorf("%.1f allocations per frame read, want none", allocs)
	}
}

// burstDispatcher counts the frames delivered.
type burstDispatcher struct{ delivered atomic.Int64 }

func (d *burstDispatcher) DeliverNetworkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {
	d.delivered.Add(1)
}

func (d *burstDispatcher) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {}

func TestVnetEndsBursts(t *testing.T) {
	const big = 52 << 10 // five frames of this size end a burst by bytes
	tests := []struct {
		frames int
		size   int     // bytes of each frame; 0: a small one
		ends   []int64 // frames delivered at each burst end
	}{
		{1, 0, []int64{1}},
		{3, 0, []int64{3}},
		{MaxBurstFrames, 0, []int64{MaxBurstFrames}},
		{2*MaxBurstFrames + 2, 0, []int64{MaxBurstFrames, 2 * MaxBurstFrames, 2*MaxBurstFrames + 2}},
		{6, big, []int64{5, 6}}, // 5 × 52 KiB reach 256 KiB
	}
	frame, _ := testFrame{proto: header.UDPProtocolNumber}.build()
	copy(frame, header.EthernetBroadcastAddress)
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.frames, "x", tt.size), func(t *testing.T) {
			msg := append(make([]byte, vnetHdrSize), frame...)
			if tt.size > len(msg) {
				msg = append(msg, make([]byte, tt.size-len(msg))...)
			}
			l, peer := vnetPair(t)
			// Room for 6 × 52 KiB (the kernel doubles what it allows, at
			// least 2 × 212,992 bytes), and a full buffer fails the test
			// rather than block it.
			unix.SetsockoptInt(peer, unix.SOL_SOCKET, unix.SO_SNDBUF, 1<<20)
			if err := unix.SetNonblock(peer, true); err != nil {
				t.Fatal(err)
			}
			// Queued before the reader starts: one burst of them all.
			for i := range tt.frames {
				if _, err := unix.Write(peer, msg); err != nil {
					t.Fatalf("queueing frame %d of %d bytes: %v", i, len(msg), err)
				}
			}
			d := new(burstDispatcher)
			ends := make(chan int64, len(tt.ends)+1)
			l.OnBurstEnd(func() { ends <- d.delivered.Load() })
			l.Attach(d)
			for i, want := range tt.ends {
				select {
				case got := <-ends:
					if got != want {
						t.Fatalf("burst end %d after %d frames, want %d", i, got, want)
					}
				case <-time.After(5 * time.Second):
					t.Fatalf("burst end %d not called within 5s (%d frames delivered)", i, d.delivered.Load())
				}
			}
			// An empty tap ends no further burst.
			select {
			case got := <-ends:
				t.Fatalf("an extra burst end, after %d frames", got)
			case <-time.After(50 * time.Millisecond):
			}
		})
	}
}
