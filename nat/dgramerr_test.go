package nat_test

import (
	"bytes"
	"net"
	"net/netip"
	"slices"
	"syscall"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/masqnet/masq/internal/memguest"
	"github.com/masqnet/masq/internal/testkit"
	"github.com/masqnet/masq/nat"
)

// connectedUDP opens a guest UDP socket connected to dst whose datagrams
// leave with ttl (0: the default).
func connectedUDP(t *testing.T, g *memguest.Guest, dst netip.AddrPort, ttl int) *gonet.UDPConn {
	t.Helper()
	return connectedUDPWith(t, g, dst, ttl, nil)
}

// connectedUDPWith is connectedUDP with set, when not nil, called on the
// endpoint before it connects.
func connectedUDPWith(t *testing.T, g *memguest.Guest, dst netip.AddrPort, ttl int, set func(tcpip.Endpoint) tcpip.Error) *gonet.UDPConn {
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
	if set != nil {
		if err := set(ep); err != nil {
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
	echo := testkit.UDPEcho(t)
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
			pod.route(dst, testkit.UDPEcho(t))
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
	// Counted when sent: the guest's stack takes them a moment later.
	received := g.Stack.Stats().ICMP.V4.PacketsReceived.TimeExceeded
	waitUntil(3*time.Second, func() bool { return received.Value() >= 50 })
	if got := received.Value(); got != 50 {
		t.Errorf("guest got %d time exceeded, want 50", got)
	}
}

// TestPathMTUErrorsReachGuest: "fragmentation needed" and "packet too
// big" the pod's socket reports, from a router or from the pod's own
// stack (a local EMSGSIZE), reach the guest with the MTU, quoting its
// datagram, from the router or the gateway; a guest datagram with DF
// leaves the pod with DF (and one without, without).
func TestPathMTUErrorsReachGuest(t *testing.T) {
	router4, router6 := netip.MustParseAddr("198.18.7.1"), netip.MustParseAddr("2001:db8:7::1")
	for _, c := range []struct {
		name    string
		dst     netip.AddrPort
		df      bool
		err     nat.PodError // what the pod's socket reports
		from    netip.Addr
		typ     uint8
		mtu     uint32
		wantDFs []bool
		relayed bool
	}{
		{"v4 router", netip.AddrPortFrom(world4, 9), true,
			nat.PodError{Origin: nat.OriginICMP4, Type: 3, Code: 4, Info: 1300, From: router4, Errno: syscall.EMSGSIZE},
			router4, 3, 1300, []bool{true}, true},
		{"v4 local", netip.AddrPortFrom(world4, 9), true,
			nat.PodError{Origin: nat.OriginLocal, Info: 1280, Errno: syscall.EMSGSIZE},
			gw4, 3, 1280, []bool{true}, true},
		{"v4 without df", netip.AddrPortFrom(world4, 9), false,
			nat.PodError{Origin: nat.OriginICMP4, Type: 3, Code: 3, From: world4},
			world4, 3, 0, []bool{false}, true},
		{"v6 router", netip.AddrPortFrom(world6, 9), false,
			nat.PodError{Origin: nat.OriginICMP6, Type: 2, Info: 1400, From: router6, Errno: syscall.EMSGSIZE},
			router6, 2, 1400, []bool{false}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			pod := newFakePod()
			pod.route(c.dst, closedPort(t))
			pod.rewrite = func(e nat.PodError) nat.PodError {
				r := c.err
				r.Dst, r.Head = e.Dst, e.Head
				return r
			}
			g, n := harness(t, pod, nil)
			six := c.dst.Addr().Is6()
			watch := g.WatchICMP(t, six)
			pmtud := tcpip.PMTUDiscoveryDont
			if c.df {
				pmtud = tcpip.PMTUDiscoveryDo
			}
			u := connectedUDPWith(t, g, c.dst, 0, func(ep tcpip.Endpoint) tcpip.Error {
				return ep.SetSockOptInt(tcpip.MTUDiscoverOption, int(pmtud))
			})
			if _, err := u.Write([]byte("a datagram")); err != nil {
				t.Fatal(err)
			}
			m, err := watch.Next(3*time.Second, c.typ)
			if err != nil {
				t.Fatal(err)
			}
			if m.From != c.from || m.Rest != c.mtu {
				t.Errorf("guest got type %d code %d mtu %d from %s; want mtu %d from %s", m.Type, m.Code, m.Rest, m.From, c.mtu, c.from)
			}
			// The quote is the guest's datagram: its IP header, whose
			// destination is where the guest sent it, and UDP header.
			if dst, ok := quotedDst(m.Body, six); !ok || dst != c.dst.Addr() {
				t.Errorf("quote %x: destination %s, want %s", m.Body, dst, c.dst.Addr())
			}
			if got := n.Stats().ICMPErrors; got != 1 {
				t.Errorf("ICMPErrors = %d, want 1", got)
			}
			pod.mu.Lock()
			defer pod.mu.Unlock()
			if !slices.Equal(pod.dfs, c.wantDFs) {
				t.Errorf("pod sent with df %v, want %v", pod.dfs, c.wantDFs)
			}
		})
	}
}

// quotedDst returns the destination address of the IP header an ICMP
// error quotes.
func quotedDst(quote []byte, six bool) (netip.Addr, bool) {
	if six {
		if len(quote) < header.IPv6MinimumSize {
			return netip.Addr{}, false
		}
		return netip.AddrFrom16(header.IPv6(quote).DestinationAddress().As16()), true
	}
	if len(quote) < header.IPv4MinimumSize {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4(header.IPv4(quote).DestinationAddress().As4()), true
}

// TestTTLOneExpiresAtGateway: a TCP SYN or an ICMP echo request with TTL
// (hop limit) 1 gets time exceeded from the gateway, quoting it, and goes
// no further: no dial, no echo from the pod. (UDP: TestTimeExceededAtGateway.)
func TestTTLOneExpiresAtGateway(t *testing.T) {
	for _, dst := range []netip.Addr{world4, world6} {
		six := dst.Is6()
		network, ttlOpt, gw := ipv4.ProtocolNumber, tcpip.IPv4TTLOption, gw4
		icmpProto, echoType, exceeded := icmp.ProtocolNumber4, uint8(header.ICMPv4Echo), uint8(header.ICMPv4TimeExceeded)
		if six {
			network, ttlOpt, gw = ipv6.ProtocolNumber, tcpip.IPv6HopLimitOption, gw6
			icmpProto, echoType, exceeded = icmp.ProtocolNumber6, uint8(header.ICMPv6EchoRequest), uint8(header.ICMPv6TimeExceeded)
		}
		for _, proto := range []string{"tcp", "icmp"} {
			t.Run(proto+" "+dst.String(), func(t *testing.T) {
				pod := newFakePod()
				pod.up[dst] = true
				to := netip.AddrPortFrom(dst, 7)
				pod.route(to, tcpServer(t, func(net.Conn) {}))
				g, n := harness(t, pod, nil)
				watch := g.WatchICMP(t, six)
				var wq waiter.Queue
				transport := tcp.ProtocolNumber
				if proto == "icmp" {
					transport = icmpProto
				}
				ep, err := g.Stack.NewEndpoint(transport, network, &wq)
				if err != nil {
					t.Fatal(err)
				}
				defer ep.Close()
				if err := ep.SetSockOptInt(ttlOpt, 1); err != nil {
					t.Fatal(err)
				}
				if proto == "tcp" {
					ep.Connect(memguest.FullAddress(to)) // in progress: the SYN is out
				} else {
					if err := ep.Connect(memguest.FullAddress(to)); err != nil {
						t.Fatal(err)
					}
					echo := make([]byte, 16)
					echo[0] = echoType
					if _, err := ep.Write(bytes.NewReader(echo), tcpip.WriteOptions{}); err != nil {
						t.Fatal(err)
					}
				}
				m, werr := watch.Next(3*time.Second, exceeded)
				if werr != nil {
					t.Fatal(werr)
				}
				if m.From != gw {
					t.Errorf("time exceeded from %s, want the gateway %s", m.From, gw)
				}
				if qd, ok := quotedDst(m.Body, six); !ok || qd != dst {
					t.Errorf("quote %x: destination %s, want %s", m.Body, qd, dst)
				}
				if got := n.Stats().ICMPErrors; got == 0 {
					t.Errorf("ICMPErrors = 0, want at least 1")
				}
				pod.mu.Lock()
				defer pod.mu.Unlock()
				if pod.dials != 0 {
					t.Errorf("pod dialled %d times, want 0", pod.dials)
				}
			})
		}
	}
}

// TestTCPProbeTTL: a guest SYN with a probe's TTL (traceroute -T) is
// dialled with that TTL less one, and the ICMP error that ends the dial
// (a router's time exceeded) reaches the guest from the router, quoting
// the SYN; a connection's SYN (TTL 64) is dialled with the pod's default.
func TestTCPProbeTTL(t *testing.T) {
	router4 := netip.MustParseAddr("198.18.7.1")
	pod := newFakePod()
	to := netip.AddrPortFrom(world4, 7)
	pod.route(to, tcpServer(t, func(net.Conn) {}))
	pod.dialTTLErr = &nat.DialError{Err: syscall.EHOSTUNREACH,
		PodError: nat.PodError{Origin: nat.OriginICMP4, Type: 11, Code: 0, From: router4}}
	g, _ := harness(t, pod, nil)
	watch := g.WatchICMP(t, false)
	var wq waiter.Queue
	ep, err := g.Stack.NewEndpoint(tcp.ProtocolNumber, ipv4.ProtocolNumber, &wq)
	if err != nil {
		t.Fatal(err)
	}
	defer ep.Close()
	if err := ep.SetSockOptInt(tcpip.IPv4TTLOption, 5); err != nil {
		t.Fatal(err)
	}
	ep.Connect(memguest.FullAddress(to))
	m, werr := watch.Next(3*time.Second, uint8(header.ICMPv4TimeExceeded))
	if werr != nil {
		t.Fatal(werr)
	}
	if m.From != router4 {
		t.Errorf("time exceeded from %s, want the router %s", m.From, router4)
	}
	if qd, ok := quotedDst(m.Body, false); !ok || qd != world4 {
		t.Errorf("quote %x: destination %s, want %s", m.Body, qd, world4)
	}
	pod.mu.Lock()
	ttls := slices.Clone(pod.dialTTLs)
	pod.dialTTLErr = nil
	pod.mu.Unlock()
	if len(ttls) == 0 || ttls[0] != 4 {
		t.Errorf("dialled with TTLs %v, want 4 first", ttls)
	}
	// A connection's SYN: the pod's default TTL.
	c, derr := dial(g, to, 3*time.Second)
	if derr != nil {
		t.Fatal(derr)
	}
	c.Close()
	pod.mu.Lock()
	defer pod.mu.Unlock()
	if !slices.Equal(pod.dialTTLs, ttls) {
		t.Errorf("a TTL 64 SYN was dialled with a TTL: %v", pod.dialTTLs[len(ttls):])
	}
}
