package link

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// recorder is a dispatcher that sends a copy of each frame's network
// payload to frames.
type recorder struct{ frames chan []byte }

func (r *recorder) DeliverNetworkPacket(_ tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	select {
	case r.frames <- pkt.ToView().AsSlice()[header.EthernetMinimumSize:]:
	default:
	}
}

func (r *recorder) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {}

// discard is a dispatcher that drops everything.
type discard struct{}

func (discard) DeliverNetworkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {}
func (discard) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer)    {}

// ethFrame returns a broadcast Ethernet frame carrying payload.
func ethFrame(payload []byte) []byte {
	f := make([]byte, header.EthernetMinimumSize, header.EthernetMinimumSize+len(payload))
	header.Ethernet(f).Encode(&header.EthernetFields{DstAddr: header.EthernetBroadcastAddress,
		SrcAddr: "\x52\x54\x00\x12\x34\x56", Type: header.IPv4ProtocolNumber})
	return append(f, payload...)
}

// stream returns frames in the stream protocol.
func stream(frames ...[]byte) []byte {
	var b []byte
	for _, f := range frames {
		b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	return b
}

// listenTest returns an attached Socket on a unix socket in a temporary
// directory, closed when the test ends.
func listenTest(t *testing.T, d stack.NetworkDispatcher) (*Socket, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "guest.sock")
	s, err := ListenSocket(SocketConfig{Addr: SocketAddr{Path: path}, MTU: 1500, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	s.Attach(d)
	return s, path
}

func dialTest(t *testing.T, path string) net.Conn {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// expectFrame waits for a frame whose payload is want.
func expectFrame(t *testing.T, r *recorder, want []byte) {
	t.Helper()
	select {
	case got := <-r.frames:
		if !bytes.Equal(got, want) {
			t.Fatalf("delivered %q, want %q", got, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("frame %q not delivered", want)
	}
}

// expectClosed waits for the peer to close c.
func expectClosed(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read = %v, want EOF (closed by masq)", err)
	}
}

func TestFrameReaderSplitAtEveryByte(t *testing.T) {
	frames := [][]byte{ethFrame([]byte("one")), ethFrame(bytes.Repeat([]byte("x"), 1486)), ethFrame(nil)}
	in := stream(frames...)
	r := newFrameReader(1500 + header.EthernetMinimumSize)
	var got [][]byte
	keep := func(f []byte) { got = append(got, bytes.Clone(f)) }
	for i := range in {
		copy(r.space(), in[i:i+1])
		if err := r.parse(1, keep); err != nil {
			t.Fatalf("byte %d: %v", i, err)
		}
	}
	if len(got) != len(frames) {
		t.Fatalf("got %d frames, want %d", len(got), len(frames))
	}
	for i := range frames {
		if !bytes.Equal(got[i], frames[i]) {
			t.Fatalf("frame %d differs", i)
		}
	}
}

func TestFrameReaderManyFramesPerRead(t *testing.T) {
	var frames [][]byte
	for i := range 100 {
		frames = append(frames, ethFrame(bytes.Repeat([]byte{byte(i)}, i*10)))
	}
	in := stream(frames...)
	r := newFrameReader(1500 + header.EthernetMinimumSize)
	n := 0
	if err := r.parse(copy(r.space(), in), func(f []byte) {
		if !bytes.Equal(f, frames[n]) {
			t.Fatalf("frame %d differs", n)
		}
		n++
	}); err != nil {
		t.Fatal(err)
	}
	if n != len(frames) {
		t.Fatalf("one read gave %d frames, want %d", n, len(frames))
	}
}

func TestFrameReaderBadLength(t *testing.T) {
	for _, size := range []uint32{0, 1500 + 14 + 1, 1 << 31} {
		r := newFrameReader(1500 + 14)
		in := binary.BigEndian.AppendUint32(nil, size)
		if err := r.parse(copy(r.space(), in), func([]byte) {}); !errors.Is(err, errFrameLen) {
			t.Errorf("length %d: err = %v, want errFrameLen", size, err)
		}
	}
}

func TestSocketBadLengthClosesOnlyThatConnection(t *testing.T) {
	rec := &recorder{frames: make(chan []byte, 16)}
	s, path := listenTest(t, rec)
	bad := dialTest(t, path)
	bad.Write(binary.BigEndian.AppendUint32(nil, 1<<20))
	expectClosed(t, bad)
	good := dialTest(t, path)
	good.Write(stream(ethFrame([]byte("after"))))
	expectFrame(t, rec, []byte("after"))
	if got := s.Stats().RxBadLength; got != 1 {
		t.Fatalf("RxBadLength = %d, want 1", got)
	}
}

func TestSocketOneGuestAtATime(t *testing.T) {
	rec := &recorder{frames: make(chan []byte, 16)}
	s, path := listenTest(t, rec)
	first := dialTest(t, path)
	first.Write(stream(ethFrame([]byte("first"))))
	expectFrame(t, rec, []byte("first"))
	second := dialTest(t, path)
	expectClosed(t, second)
	if got := s.Stats().GuestsRefused; got != 1 {
		t.Fatalf("GuestsRefused = %d, want 1", got)
	}
	// The first guest is still served; after it leaves, the next is.
	first.Write(stream(ethFrame([]byte("still"))))
	expectFrame(t, rec, []byte("still"))
	first.Close()
	// A guest reconnecting at once (a QEMU restart) is served, every
	// time, even before masq has read the old connection's end.
	prev := net.Conn(nil)
	for i := range 20 {
		if prev != nil {
			prev.Close()
		}
		again := dialTest(t, path)
		msg := []byte(fmt.Sprint("again ", i))
		again.Write(stream(ethFrame(msg)))
		expectFrame(t, rec, msg)
		prev = again
	}
	if got := s.Stats().GuestsRefused; got != 1 {
		t.Fatalf("GuestsRefused = %d after 20 reconnects, want still 1", got)
	}
}

func TestSocketStaleFileReplaced(t *testing.T) {
	path := filepath.Join(t.TempDir(), "guest.sock")
	old, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	old.SetUnlinkOnClose(false)
	old.Close() // a masq that was killed leaves its socket file
	s, err := ListenSocket(SocketConfig{Addr: SocketAddr{Path: path}, MTU: 1500})
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	s.Close()
}

func TestSocketLiveFileRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "guest.sock")
	other, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close() // another masq, serving its guest
	_, err = ListenSocket(SocketConfig{Addr: SocketAddr{Path: path}, MTU: 1500})
	if err == nil || !strings.Contains(err.Error(), "listens there already") {
		t.Fatalf("err = %v, want a refusal to take over a live socket", err)
	}
	if c, err := net.Dial("unix", path); err != nil {
		t.Fatalf("the other listener's socket is gone: %v", err)
	} else {
		c.Close()
	}
}

func TestSocketNonSocketFileRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(path, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := ListenSocket(SocketConfig{Addr: SocketAddr{Path: path}, MTU: 1500})
	if err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("err = %v, want a refusal", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "precious" {
		t.Fatal("file was touched")
	}
}

func TestSocketFileModeAndRemoval(t *testing.T) {
	for _, tt := range []struct{ mode, want fs.FileMode }{{0, 0o600}, {0o660, 0o660}} {
		path := filepath.Join(t.TempDir(), "guest.sock")
		s, err := ListenSocket(SocketConfig{Addr: SocketAddr{Path: path}, Mode: tt.mode, MTU: 1500})
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != tt.want || fi.Mode().Type() != fs.ModeSocket {
			t.Errorf("mode %o: file mode %v, want socket %o", tt.mode, fi.Mode(), tt.want)
		}
		s.Attach(discard{})
		s.Close()
		if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("socket file left after Close: %v", err)
		}
	}
}

func TestSocketTCP(t *testing.T) {
	rec := &recorder{frames: make(chan []byte, 16)}
	addr, err := ParseSocketAddr("tcp:127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := ListenSocket(SocketConfig{Addr: addr, MTU: 1500, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Attach(rec)
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(stream(ethFrame([]byte("tcp"))))
	expectFrame(t, rec, []byte("tcp"))
}

func TestSocketReadAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	s, _ := listenTest(t, discard{})
	var frames [][]byte
	for range 64 {
		frames = append(frames, ethFrame(make([]byte, 1400)))
	}
	in := stream(frames...)
	r := newFrameReader(s.maxFrameLen())
	allocs := testing.AllocsPerRun(100, func() {
		if err := r.parse(copy(r.space(), in), s.deliver); err != nil {
			t.Fatal(err)
		}
	})
	if perFrame := allocs / float64(len(frames)); perFrame >= 0.1 {
		t.Fatalf("%.2f allocations per frame read, want none", perFrame)
	}
}

// outPacket returns an outbound packet: an Ethernet header and payload,
// the payload in views of viewSize bytes.
func outPacket(payload []byte, viewSize int) *stack.PacketBuffer {
	var buf buffer.Buffer
	for p := payload; len(p) > 0; {
		n := min(viewSize, len(p))
		buf.Append(buffer.NewViewWithData(p[:n]))
		p = p[n:]
	}
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{ReserveHeaderBytes: header.EthernetMinimumSize, Payload: buf})
	header.Ethernet(pkt.LinkHeader().Push(header.EthernetMinimumSize)).Encode(&header.EthernetFields{
		DstAddr: header.EthernetBroadcastAddress, Type: header.IPv4ProtocolNumber})
	return pkt
}

// connected returns a Socket with a guest connected through c.
func connected(t *testing.T) (*Socket, net.Conn) {
	t.Helper()
	rec := &recorder{frames: make(chan []byte, 16)}
	s, path := listenTest(t, rec)
	c := dialTest(t, path)
	c.Write(stream(ethFrame([]byte("hello"))))
	expectFrame(t, rec, []byte("hello")) // c is now the guest
	return s, c
}

func TestSocketWritePacketsFraming(t *testing.T) {
	s, c := connected(t)
	var list stack.PacketBufferList
	var want [][]byte
	for i, viewSize := range []int{1, 7, 1500, 3} {
		payload := bytes.Repeat([]byte{byte('a' + i)}, 100+i*300)
		pkt := outPacket(payload, viewSize)
		want = append(want, pkt.ToView().AsSlice())
		list.PushBack(pkt)
	}
	n, err := s.WritePackets(list)
	list.DecRef()
	if n != len(want) || err != nil {
		t.Fatalf("WritePackets = %d, %v", n, err)
	}
	readFrames(t, c, want)
}

// readFrames reads frames from the stream c and checks them against want.
func readFrames(t *testing.T, c net.Conn, want [][]byte) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for i, w := range want {
		var prefix [4]byte
		if _, err := io.ReadFull(c, prefix[:]); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		got := make([]byte, binary.BigEndian.Uint32(prefix[:]))
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if !bytes.Equal(got, w) {
			t.Fatalf("frame %d: %d bytes differ from the %d written", i, len(got), len(w))
		}
	}
}

func TestSocketWriteWithoutGuestCounted(t *testing.T) {
	s, _ := listenTest(t, discard{})
	var list stack.PacketBufferList
	list.PushBack(outPacket([]byte("lost"), 64))
	defer list.DecRef()
	if n, err := s.WritePackets(list); n != 1 || err != nil {
		t.Fatalf("WritePackets = %d, %v; want the frame taken and dropped", n, err)
	}
	if got := s.Stats().TxNoGuest; got != 1 {
		t.Fatalf("TxNoGuest = %d, want 1", got)
	}
}

// TestSocketFullKeepsFraming fills the socket until frames are dropped,
// then reads everything: every frame that went out is whole, however the
// socket cut the writes.
func TestSocketFullKeepsFraming(t *testing.T) {
	s, c := connected(t)
	var want [][]byte
	for i := 0; s.Stats().TxQueueFull < 50; i++ {
		if i > 100000 {
			t.Fatal("socket never filled")
		}
		pkt := outPacket(bytes.Repeat([]byte{byte(i)}, 1000+i%499), 333)
		frame := pkt.ToView().AsSlice()
		var list stack.PacketBufferList
		list.PushBack(pkt)
		if n, _ := s.WritePackets(list); n == 1 {
			want = append(want, frame)
		}
		list.DecRef()
	}
	readFrames(t, c, want)
	// Drained: writes go through again.
	var list stack.PacketBufferList
	pkt := outPacket([]byte("after"), 64)
	last := pkt.ToView().AsSlice()
	list.PushBack(pkt)
	defer list.DecRef()
	if n, err := s.WritePackets(list); n != 1 {
		t.Fatalf("after draining: WritePackets = %d, %v", n, err)
	}
	readFrames(t, c, [][]byte{last})
}

func TestSocketWriteAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	s, c := connected(t)
	go io.Copy(io.Discard, c)
	var list stack.PacketBufferList
	list.PushBack(outPacket(make([]byte, 1400), 512))
	defer list.DecRef()
	allocs := testing.AllocsPerRun(200, func() { s.WritePackets(list) })
	if allocs > 0 {
		t.Fatalf("%.1f allocations per frame written, want 0", allocs)
	}
}

func TestParseSocketAddr(t *testing.T) {
	for _, tt := range []struct {
		in, want string
		ok       bool
	}{
		{"/run/masq/guest.sock", "/run/masq/guest.sock", true},
		{"tcp:127.0.0.1:5555", "tcp:127.0.0.1:5555", true},
		{"tcp:[::1]:5555", "tcp:[::1]:5555", true},
		{"tcp:localhost:5555", "", false},
		{"tcp:127.0.0.1", "", false},
		{"", "", false},
		{"/run/", "", false},
		{"/" + strings.Repeat("x", 107), "", false},
	} {
		a, err := ParseSocketAddr(tt.in)
		if (err == nil) != tt.ok || (tt.ok && a.String() != tt.want) {
			t.Errorf("ParseSocketAddr(%q) = %v, %v", tt.in, a, err)
		}
	}
}
