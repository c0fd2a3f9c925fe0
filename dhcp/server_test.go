package dhcp

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// loopback is a server serving on a loopback UDP socket, with its
// broadcasts redirected to a client socket.
type loopback struct {
	server *Server
	conn   net.PacketConn // the server's
	client net.PacketConn
	cancel context.CancelFunc
	done   chan error // Serve's result
	logs   *syncBuffer
}

func startLoopback(t *testing.T, cfg Config) *loopback {
	t.Helper()
	listen := func() net.PacketConn {
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	l := &loopback{conn: listen(), client: listen(), done: make(chan error, 1), logs: &syncBuffer{}}
	log := slog.New(slog.NewTextHandler(l.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := NewServer(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	s.broadcast = l.client.LocalAddr().(*net.UDPAddr).AddrPort()
	l.server = s
	ctx, cancel := context.WithCancel(t.Context())
	l.cancel = cancel
	go func() { l.done <- s.Serve(ctx, l.conn) }()
	t.Cleanup(func() {
		cancel()
		<-l.done
	})
	return l
}

// exchange sends req to the server and returns the reply that arrives.
func (l *loopback) exchange(t *testing.T, req *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	t.Helper()
	l.send(t, req.ToBytes())
	buf := make([]byte, 1500)
	if err := l.client.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	n, _, err := l.client.ReadFrom(buf)
	if err != nil {
		t.Fatalf("no reply to %v: %v", req.MessageType(), err)
	}
	reply, err := dhcpv4.FromBytes(buf[:n])
	if err != nil {
		t.Fatalf("reply does not parse: %v", err)
	}
	if reply.TransactionID != req.TransactionID {
		t.Fatalf("reply xid %v, want %v", reply.TransactionID, req.TransactionID)
	}
	return reply
}

func (l *loopback) send(t *testing.T, pkt []byte) {
	t.Helper()
	if _, err := l.client.WriteTo(pkt, l.conn.LocalAddr()); err != nil {
		t.Fatal(err)
	}
}

// stop cancels Serve and returns its result.
func (l *loopback) stop(t *testing.T) error {
	t.Helper()
	l.cancel()
	select {
	case err := <-l.done:
		l.done <- err // for the cleanup
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after cancel")
		return nil
	}
}

// TestServeDORA runs DISCOVER, OFFER, REQUEST, ACK over real sockets, after
// a datagram that is not DHCP at all.
func TestServeDORA(t *testing.T) {
	l := startLoopback(t, testConfig())
	l.send(t, []byte("not a DHCP packet"))

	offer := l.exchange(t, discover(t, guestMAC))
	if offer.MessageType() != dhcpv4.MessageTypeOffer || offer.YourIPAddr.String() != "10.0.2.2" {
		t.Fatalf("got %v of %v, want an OFFER of 10.0.2.2", offer.MessageType(), offer.YourIPAddr)
	}
	ack := l.exchange(t, must(t)(dhcpv4.NewRequestFromOffer(offer)))
	if ack.MessageType() != dhcpv4.MessageTypeAck || ack.YourIPAddr.String() != "10.0.2.2" {
		t.Fatalf("got %v of %v, want an ACK of 10.0.2.2", ack.MessageType(), ack.YourIPAddr)
	}
	if mtu(ack) != 1450 {
		t.Errorf("ACK MTU %d, want 1450", mtu(ack))
	}

	if err := l.stop(t); err != nil {
		t.Errorf("Serve returned %v after cancel, want nil", err)
	}
	logs := l.logs.String()
	for _, want := range []string{"unparsable packet", "dhcp: offer", "dhcp: ack", "mac=02:00:00:00:00:01", "ip=10.0.2.2"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
}

// TestServeLogsRelease: a RELEASE gets no reply but one log line.
func TestServeLogsRelease(t *testing.T) {
	l := startLoopback(t, testConfig())
	l.send(t, message(t, dhcpv4.MessageTypeRelease, guestMAC, testConfig().GuestIP).ToBytes())
	// The DISCOVER behind it is answered only after the RELEASE is handled.
	l.exchange(t, discover(t, guestMAC))
	if logs := l.logs.String(); !strings.Contains(logs, `msg="dhcp: release"`) {
		t.Errorf("no release logged:\n%s", logs)
	}
}

// TestServeClosesConn: after cancel, Serve has closed the conn and left
// no goroutine of its own (the one that closes conn) running.
func TestServeClosesConn(t *testing.T) {
	l := startLoopback(t, testConfig())
	if err := l.stop(t); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if _, err := l.conn.WriteTo([]byte{0}, l.client.LocalAddr()); !errors.Is(err, net.ErrClosed) {
		t.Errorf("write on the served conn after Serve returned: %v, want net.ErrClosed", err)
	}
	buf := make([]byte, 1<<20)
	stacks := string(buf[:runtime.Stack(buf, true)])
	if strings.Contains(stacks, "dhcp.(*Server).Serve") {
		t.Errorf("a goroutine of Serve outlived it:\n%s", stacks)
	}
}

// TestServeCancelledBefore: a context already done stops Serve at once.
func TestServeCancelledBefore(t *testing.T) {
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := newTestServer(t, testConfig()).Serve(ctx, conn); err != nil {
		t.Errorf("Serve = %v, want nil", err)
	}
	if err := conn.Close(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("conn still open after Serve: Close = %v", err)
	}
}

// TestServeReadError: a conn closed under Serve, with ctx still live, is
// an error.
func TestServeReadError(t *testing.T) {
	l := startLoopback(t, testConfig())
	l.conn.Close()
	select {
	case err := <-l.done:
		l.done <- err
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Serve = %v, want an error wrapping net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after its conn was closed")
	}
}

// syncBuffer is a bytes.Buffer safe for a logging goroutine and a reader.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
