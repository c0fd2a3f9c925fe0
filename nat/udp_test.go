package nat_test

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/masqnet/masq/internal/testkit"
	"github.com/masqnet/masq/nat"
)

func TestUDP200ParallelFlows(t *testing.T) {
	pod := newFakePod()
	echoSrv := testkit.UDPEcho(t)
	dst := netip.AddrPortFrom(world4, 7)
	pod.route(dst, echoSrv)
	g, n := harness(t, pod, nil)
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := 0; i < 200; i++ {
		c := guestUDP(t, g, guest4.Addr())
		wg.Go(func() {
			msg := fmt.Sprintf("flow %d", i)
			var err error
			for try := 0; try < 3; try++ { // UDP: the client retries, as real ones do
				var got string
				var from netip.AddrPort
				got, from, err = testkit.UDPRoundTrip(c, dst, msg, time.Second)
				if err == nil && (got != msg || from != dst) {
					err = fmt.Errorf("flow %d: got %q from %s, want %q from %s", i, got, from, msg, dst)
					break
				}
				if err == nil {
					break
				}
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if got := n.UDPFlows(); got != 200 {
		t.Errorf("UDP flows = %d, want 200", got)
	}
}

func TestUDPIPv6(t *testing.T) {
	pod := newFakePod()
	dst := netip.AddrPortFrom(world6, 7)
	pod.route(dst, testkit.UDPEcho(t))
	g, _ := harness(t, pod, nil)
	got, from, err := testkit.UDPRoundTrip(guestUDP(t, g, guest6.Addr()), dst, "six", 2*time.Second)
	if err != nil || got != "six" || from != dst {
		t.Fatalf("got %q from %s (%v), want %q from %s", got, from, err, "six", dst)
	}
}

func TestUDPIdleEviction(t *testing.T) {
	var mu sync.Mutex
	now := time.Unix(1_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }

	pod := newFakePod()
	echoSrv := testkit.UDPEcho(t)
	pod.route(netip.AddrPortFrom(world4, 7), echoSrv)
	pod.route(netip.AddrPortFrom(world4, 53), echoSrv)
	g, n := harness(t, pod, func(c *nat.Config) { c.Now = clock })
	for _, port := range []uint16{7, 53} {
		if _, _, err := testkit.UDPRoundTrip(guestUDP(t, g, guest4.Addr()), netip.AddrPortFrom(world4, port), "x", 2*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if got := n.UDPFlows(); got != 2 {
		t.Fatalf("flows = %d, want 2", got)
	}
	steps := []struct {
		advance      time.Duration
		wantExpired  int
		wantRemained int
	}{
		{29 * time.Second, 0, 2}, // within both timeouts
		{2 * time.Second, 1, 1},  // 31 s: the DNS flow (30 s) is gone
		{88 * time.Second, 0, 1}, // 119 s
		{2 * time.Second, 1, 0},  // 121 s: the other one (120 s) too
	}
	for _, s := range steps {
		advance(s.advance)
		if got := n.ExpireUDP(clock()); got != s.wantExpired {
			t.Fatalf("after +%v: expired %d, want %d", s.advance, got, s.wantExpired)
		}
		testkit.WaitFor(t, func() bool { return n.UDPFlows() == s.wantRemained }, "flows to close")
	}
	if got := n.Stats().UDPExpired; got != 2 {
		t.Errorf("UDPExpired = %d, want 2", got)
	}
}

func TestUDPSpoofedSourceDropped(t *testing.T) {
	pod := newFakePod()
	pod.route(netip.AddrPortFrom(world4, 7), testkit.UDPEcho(t))
	g, n := harness(t, pod, nil)
	g.AddAddress(t, netip.MustParsePrefix("10.0.2.99/24"))
	c := guestUDP(t, g, netip.MustParseAddr("10.0.2.99"))
	if _, _, err := testkit.UDPRoundTrip(c, netip.AddrPortFrom(world4, 7), "spoof", 500*time.Millisecond); err == nil {
		t.Fatal("a datagram from a spoofed source was answered")
	}
	if s := n.Stats(); s.DroppedSpoofed == 0 || s.UDPOpened != 0 {
		t.Fatalf("DroppedSpoofed = %d, UDPOpened = %d; want > 0 and 0", s.DroppedSpoofed, s.UDPOpened)
	}
}

func TestUDPDNSForwarding(t *testing.T) {
	resolver := testkit.UDPEcho(t)
	g, _ := harness(t, newFakePod(), func(c *nat.Config) { c.Policy.DNS = resolver })
	for _, gw := range []netip.Addr{gw4, gw6} {
		local := guest4.Addr()
		if gw.Is6() {
			local = guest6.Addr()
		}
		dst := netip.AddrPortFrom(gw, 53)
		got, from, err := testkit.UDPRoundTrip(guestUDP(t, g, local), dst, "query", 2*time.Second)
		if err != nil || got != "query" || from != dst {
			t.Fatalf("DNS via %s: got %q from %s (%v), want the answer from %s", dst, got, from, err, dst)
		}
	}
}

func TestUDPGatewayRefused(t *testing.T) {
	g, n := harness(t, newFakePod(), nil)
	c := guestUDP(t, g, guest4.Addr())
	if _, _, err := testkit.UDPRoundTrip(c, netip.AddrPortFrom(gw4, 5000), "x", 500*time.Millisecond); err == nil {
		t.Fatal("gateway port answered")
	}
	if n.Stats().RefusedGateway == 0 {
		t.Fatal("RefusedGateway not counted")
	}
}

func TestUDPUnreachableFamilyAnsweredAtOnce(t *testing.T) {
	pod := newFakePod()
	dst := netip.MustParseAddrPort("[2001:db8::99]:53")
	pod.fail[dst] = &net.OpError{Op: "write", Net: "udp", Err: syscall.ENETUNREACH}
	g, n := harness(t, pod, nil)
	watch := g.WatchICMP(t, true)
	c := guestUDP(t, g, guest6.Addr())
	if _, err := c.WriteTo([]byte("q"), net.UDPAddrFromAddrPort(dst)); err != nil {
		t.Fatal(err)
	}
	// The guest gets an ICMPv6 "no route to destination" from the gateway
	// at once, as from a router without a route, instead of waiting out
	// its DNS timeout.
	m, err := watch.Next(3*time.Second, uint8(header.ICMPv6DstUnreachable))
	if err != nil {
		t.Fatal(err)
	}
	if m.From != gw6 || m.Code != uint8(header.ICMPv6NetworkUnreachable) {
		t.Errorf("destination unreachable code %d from %s, want code %d (no route) from %s",
			m.Code, m.From, header.ICMPv6NetworkUnreachable, gw6)
	}
	if n.Stats().UDPSendFailed == 0 {
		t.Error("UDPSendFailed not counted")
	}
}

func TestUDPPeersPerFlowBounded(t *testing.T) {
	pod := newFakePod()
	echoSrv := testkit.UDPEcho(t)
	for i := 0; i < 1030; i++ {
		pod.route(netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), 7), echoSrv)
	}
	g, n := harness(t, pod, nil)
	c := guestUDP(t, g, guest4.Addr())
	for i := 0; i < 1030; i++ {
		dst := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), 7)
		if _, err := c.WriteTo([]byte("x"), net.UDPAddrFromAddrPort(dst)); err != nil {
			t.Fatal(err)
		}
		if i%50 == 49 {
			time.Sleep(10 * time.Millisecond) // let the link drain: this is no flood test
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for n.Stats().UDPLimited < 6 {
		if time.Now().After(deadline) {
			t.Fatalf("datagrams to the 1025th and later hosts were not dropped: %+v", n.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := n.UDPFlows(); got != 1 {
		t.Fatalf("flows = %d, want 1", got)
	}
}
