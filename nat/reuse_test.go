package nat_test

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/masqnet/masq/internal/memguest"
	"github.com/masqnet/masq/internal/testkit"
	"github.com/masqnet/masq/nat"
)

// reuseConns is how many connections TestTCPPortReuse opens per case. The
// default reuses every port 20 times and takes about 6 s per case under
// the race detector; issue #16's full 20,000 run with -reuse-conns=20000
// (about 18 s per case without -race).
var reuseConns = flag.Int("reuse-conns", 2000, "connections per case of TestTCPPortReuse")

// reusePorts is the guest's source port range in TestTCPPortReuse: small,
// so each port is reused every reusePorts connections.
const reusePorts = 100

// stallBound is longer than any connect over the in-memory link takes,
// and shorter than the guest's first SYN retransmission (1 s): a connect
// beyond it is a SYN that was lost, the stall of issue #16.
const stallBound = 900 * time.Millisecond

// TestTCPPortReuse opens connection after connection from a few guest
// ports to one server, so every port is reused at once for the same
// destination: a SYN that meets what is left of the previous connection
// on masq's side (TIME_WAIT, when the server closed first) must still
// reach the forwarder, not wait for a retransmission.
func TestTCPPortReuse(t *testing.T) {
	tests := []struct {
		name        string
		serverFirst bool
	}{
		{"server closes first", true},
		{"guest closes first", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := newFakePod()
			dst := netip.AddrPortFrom(world4, 80)
			pod.route(dst, tcpServer(t, func(c net.Conn) {
				b := make([]byte, 1)
				if _, err := io.ReadFull(c, b); err != nil {
					return
				}
				c.Write(b)
				if !tt.serverFirst {
					io.Copy(io.Discard, c) // until the guest's FIN
				}
			}))
			g, _ := harness(t, pod, nil)
			if !tt.serverFirst {
				// The guest closes first, so its own endpoint sits in
				// TIME_WAIT: a Linux guest would not reuse the port before
				// it ends. Without one, this guest reuses ports at once,
				// the hardest case for masq.
				tw := tcpip.TCPTimeWaitTimeoutOption(0)
				if err := g.Stack.SetTransportProtocolOption(tcp.ProtocolNumber, &tw); err != nil {
					t.Fatal(err)
				}
			}
			var slowest time.Duration
			for i := range *reuseConns {
				took, err := requestResponse(g, 40000+uint16(i%reusePorts), dst, tt.serverFirst)
				if err != nil {
					t.Fatalf("connection %d: %v", i, err)
				}
				slowest = max(slowest, took)
				if took > stallBound {
					t.Fatalf("connection %d from port %d took %v to connect: a stalled SYN", i, 40000+i%reusePorts, took)
				}
			}
			t.Logf("%d connections from %d ports, slowest connect %v", *reuseConns, reusePorts, slowest)
		})
	}
}

// requestResponse connects from the guest's port to dst, sends one byte,
// reads it back, and closes: after the server's FIN if serverFirst, before
// it otherwise. It returns how long the connect took.
func requestResponse(g *memguest.Guest, port uint16, dst netip.AddrPort, serverFirst bool) (time.Duration, error) {
	c, took, err := dialFrom(g, port, dst, 5*time.Second)
	if err != nil {
		return took, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte{'x'}); err != nil {
		return took, fmt.Errorf("request: %w", err)
	}
	b := make([]byte, 2)
	if _, err := io.ReadFull(c, b[:1]); err != nil {
		return took, fmt.Errorf("response: %w", err)
	}
	if serverFirst {
		if n, err := c.Read(b); err != io.EOF {
			return took, fmt.Errorf("read %d bytes, %v; want the server's EOF", n, err)
		}
	}
	return took, nil
}

// dialFrom connects from the guest's port to dst within timeout (once the
// port is free) and returns how long the connect took.
func dialFrom(g *memguest.Guest, port uint16, dst netip.AddrPort, timeout time.Duration) (*gonet.TCPConn, time.Duration, error) {
	var wq waiter.Queue
	ep, terr := g.Stack.NewEndpoint(tcp.ProtocolNumber, ipv4.ProtocolNumber, &wq)
	if terr != nil {
		return nil, 0, fmt.Errorf("endpoint: %s", terr)
	}
	// The port's previous connection may still be closing on the guest's
	// side (on a busy machine its last FIN can lag): a guest cannot reuse
	// the port before it ends either, so wait for it (bounded), outside the
	// connect's time.
	deadline := time.Now().Add(timeout)
	for {
		terr = ep.Bind(tcpip.FullAddress{Addr: memguest.Addr(guest4.Addr()), Port: port})
		if _, inUse := terr.(*tcpip.ErrPortInUse); !inUse || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if terr != nil {
		ep.Close()
		return nil, 0, fmt.Errorf("bind port %d: %s", port, terr)
	}
	start := time.Now()
	entry, ready := waiter.NewChannelEntry(waiter.WritableEvents | waiter.EventHUp | waiter.EventErr)
	wq.EventRegister(&entry)
	defer wq.EventUnregister(&entry)
	terr = ep.Connect(memguest.FullAddress(dst))
	if _, started := terr.(*tcpip.ErrConnectStarted); started {
		select {
		case <-ready:
			terr = ep.LastError()
		case <-time.After(timeout):
			terr = &tcpip.ErrTimeout{}
		}
	}
	took := time.Since(start)
	if terr != nil {
		ep.Close()
		return nil, took, fmt.Errorf("connect from port %d: %w", port, errors.New(terr.String()))
	}
	return gonet.NewTCPConn(&wq, ep), took, nil
}

// TestUDPFlowReusedAfterExpiry is port reuse for UDP: the guest sends
// again from a port whose flow has just expired. The first datagram must
// open a fresh flow at once, bound to the same pod port as before (the old
// socket is closed before ExpireUDP returns), and its reply come back.
func TestUDPFlowReusedAfterExpiry(t *testing.T) {
	var mu sync.Mutex
	now := time.Unix(1_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	pod := newFakePod()
	dst := netip.AddrPortFrom(world4, 7)
	pod.route(dst, udpWhoami(t))
	g, n := harness(t, pod, func(c *nat.Config) { c.Now = clock })
	port := testkit.FreePort(t)
	c, err := gonet.DialUDP(g.Stack, &tcpip.FullAddress{NIC: memguest.NIC, Addr: memguest.Addr(guest4.Addr()), Port: port}, nil, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const rounds = 50
	for i := range rounds {
		got, _, err := testkit.UDPRoundTrip(c, dst, "x", 2*time.Second)
		if err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		if want := testkit.Itoa(port); got != want {
			t.Fatalf("round %d: the server saw pod port %s, want the guest's %s", i, got, want)
		}
		mu.Lock()
		now = now.Add(nat.DefaultUDPIdleTimeout + time.Second)
		mu.Unlock()
		if got := n.ExpireUDP(clock()); got != 1 {
			t.Fatalf("round %d: expired %d flows, want 1", i, got)
		}
	}
	if got := n.Stats().UDPExpired; got != rounds {
		t.Errorf("UDPExpired = %d, want %d", got, rounds)
	}
}

// udpWhoami runs a loopback UDP server that answers each datagram with
// the sender's port, until the test ends.
func udpWhoami(t *testing.T) netip.AddrPort {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { c.Close(); wg.Wait() })
	wg.Go(func() {
		buf := make([]byte, 2048)
		for {
			_, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			c.WriteToUDPAddrPort([]byte(testkit.Itoa(from.Port())), from)
		}
	})
	return netip.MustParseAddrPort(c.LocalAddr().String())
}
