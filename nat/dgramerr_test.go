package nat_test

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/masqnet/masq/internal/memguest"
	"github.com/masqnet/masq/nat"
)

// connectedUDP opens a guest UDP socket connected to dst whose datagrams
// leave with ttl (0: the default).
func connectedUDP(t *testing.T, g *memguest.Guest, dst netip.AddrPort, ttl int) *gonet.UDPConn {
	t.Helper()
	proto, opt := ipv4.ProtocolNumber, tcpip.IPv4TTLOption
	if dst.Addr().Is6() {
		proto, opt = ipv6.ProtocolNumber, tcpip.IPv6HopLimitOption
	}
	var wq waiter.Queue
	ep, err := g.Stack.NewEndpoint(udp.ProtocolNumber, proto, &wq)
	if err != nil {
		t.Fatal(err)
	}
	if ttl != 0 {
		if err := ep.SetSockOptInt(opt, ttl); err != nil {
			t.Fatal(err)
		}
	}
	if err := ep.Connect(memguest.FullAddress(dst)); err != nil {
		t.Fatal(err)
	}
	c := gonet.NewUDPConn(&wq, ep)
	t.Cleanup(func() { c.Close() })
	return c
}

// TestUDPRefusedReachesGuest: a guest datagram to a closed port draws the
// pod's port unreachable (the kernel's, over loopback), relayed so that
// the guest's connected socket fails at once with "connection refused".
func TestUDPRefusedReachesGuest(t *testing.T) {
	pod := newFakePod()
	dst := netip.AddrPortFrom(world4, 9)
	pod.route(dst, closedPort(t))
	g, n := harness(t, pod, nil)
	c := connectedUDP(t, g, dst, 0)
	if _, err := c.Write([]byte("anyone?")); err != nil {
		t.Fatal(err)
	}
	// gonet's Read waits for data only, not for an error: read once the
	// guest's stack has taken the ICMP error.
	unreach := g.Stack.Stats().ICMP.V4.PacketsReceived.DstUnreachable
	if !waitUntil(3*time.Second, func() bool { return unreach.Value() > 0 }) {
		t.Fatal("no destination unreachable reached the guest")
	}
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, err := c.Read(make([]byte, 64))
	if !isRefused(err) {
		t.Fatalf("guest read: %v, want connection refused", err)
	}
	if got := n.Stats().ICMPErrors; got != 1 {
		t.Errorf("ICMPErrors = %d, want 1", got)
	}
	if got := g.Stack.Stats().ICMP.V4.PacketsReceived.DstUnreachable.Value(); got != 1 {
		t.Errorf("guest got %d destination unreachable, want 1", got)
	}
	// The flow lives on: the socket's error did not end it.
	echo := udpEcho(t)
	pod.route(dst, echo)
	c.Write([]byte("again"))
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 64)
	if nr, err := c.Read(buf); err != nil || string(buf[:nr]) != "again" {
		t.Fatalf("after the error: %q, %v; want the echo", buf[:nr], err)
	}
}

// TestTimeExceededAtGateway: a guest datagram with TTL 1 (hop limit 1)
// gets time exceeded from the gateway and is not sent; others leave the
// pod one hop older.
func TestTimeExceededAtGateway(t *testing.T) {
	for _, dst := range []netip.AddrPort{netip.AddrPortFrom(world4, 7), netip.AddrPortFrom(world6, 7)} {
		t.Run(dst.Addr().String(), func(t *testing.T) {
			pod := newFakePod()
			pod.route(dst, udpEcho(t))
			g, n := harness(t, pod, nil)
			c := connectedUDP(t, g, dst, 1)
			c.Write([]byte("expire"))
			exceeded := g.Stack.Stats().ICMP.V4.PacketsReceived.TimeExceeded
			if dst.Addr().Is6() {
				exceeded = g.Stack.Stats().ICMP.V6.PacketsReceived.TimeExceeded
			}
			if !waitUntil(2*time.Second, func() bool { return exceeded.Value() == 1 }) {
				t.Fatalf("guest got %d time exceeded, want 1", exceeded.Value())
			}
			if got := n.Stats().ICMPErrors; got != 1 {
				t.Errorf("ICMPErrors = %d, want 1", got)
			}
			c2 := connectedUDP(t, g, dst, 9)
			c2.Write([]byte("nine"))
			c2.SetReadDeadline(time.Now().Add(3 * time.Second))
			if _, err := c2.Read(make([]byte, 64)); err != nil {
				t.Fatal(err)
			}
			pod.mu.Lock()
			defer pod.mu.Unlock()
			if !slices.Equal(pod.ttls, []uint8{8}) {
				t.Errorf("pod sent with TTLs %v, want [8]", pod.ttls)
			}
		})
	}
}

// waitUntil polls cond until it holds or timeout passes.
func waitUntil(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

var _ nat.ErrorConn = (*fakeUDP)(nil)

// TestICMPErrorsRateLimited: at a stopped clock, a guest flooding TTL 1
// datagrams gets the burst of time exceeded (50), and the rest are
// counted, not sent.
func TestICMPErrorsRateLimited(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	g, n := harness(t, newFakePod(), func(c *nat.Config) { c.Now = func() time.Time { return now } })
	c := connectedUDP(t, g, netip.AddrPortFrom(world4, 7), 1)
	for i := 0; i < 100; i++ {
		c.Write([]byte("flood"))
	}
	if !waitUntil(3*time.Second, func() bool { s := n.Stats(); return s.ICMPErrors+s.ICMPErrorsLimited == 100 }) {
		t.Fatalf("stats %+v: want 100 errors sent or limited", n.Stats())
	}
	if s := n.Stats(); s.ICMPErrors != 50 || s.ICMPErrorsLimited != 50 {
		t.Errorf("ICMPErrors %d, ICMPErrorsLimited %d; want 50, 50", s.ICMPErrors, s.ICMPErrorsLimited)
	}
	if got := g.Stack.Stats().ICMP.V4.PacketsReceived.TimeExceeded.Value(); got != 50 {
		t.Errorf("guest got %d time exceeded, want 50", got)
	}
}
