package inbound_test

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"

	"github.com/masqnet/masq/inbound"
	"github.com/masqnet/masq/internal/memguest"
	"github.com/masqnet/masq/internal/relay"
	"github.com/masqnet/masq/internal/testkit"
	"github.com/masqnet/masq/ports"
)

// freeLowPort returns a free port below the usual ephemeral range, as the
// default forwarding binds.
func freeLowPort(t *testing.T) uint16 {
	t.Helper()
	for port := uint16(22000); port < 23000; port++ {
		if testkit.PortFree(port) {
			return port
		}
	}
	t.Fatal("no free port in 22000..23000")
	return 0
}

// guestListen accepts one connection on the guest's port and reports the
// client address it saw, writing it back to the client.
func guestListen(t *testing.T, g *memguest.Guest, local netip.AddrPort) <-chan netip.AddrPort {
	t.Helper()
	proto := ipv4.ProtocolNumber
	if local.Addr().Is6() {
		proto = ipv6.ProtocolNumber
	}
	ln, err := gonet.ListenTCP(g.Stack, memguest.FullAddress(local), proto)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	seen := make(chan netip.AddrPort, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		from := netip.MustParseAddrPort(c.RemoteAddr().String())
		seen <- from
		io.WriteString(c, from.String())
	}()
	return seen
}

func TestInboundTCP(t *testing.T) {
	tests := []struct {
		client, guest string
		gateway       netip.Addr
	}{
		{"127.0.0.1", "10.0.2.2", gw4},
		{"::1", "fd10:0:2::2", gw6},
	}
	for _, tt := range tests {
		t.Run(tt.client, func(t *testing.T) {
			port := testkit.FreePort(t)
			pod := newFakePod()
			pod.loopback6 = tt.client == "::1"
			g, n := inboundHarness(t, pod, testkit.Itoa(port)+"/tcp")
			seen := guestListen(t, g, netip.AddrPortFrom(netip.MustParseAddr(tt.guest), port))
			c, err := net.DialTimeout("tcp", netip.AddrPortFrom(netip.MustParseAddr(tt.client), port).String(), 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatal(err)
			}
			from := <-seen
			local := netip.MustParseAddrPort(c.LocalAddr().String())
			// A client on the pod's loopback appears as the gateway, with
			// its own port.
			if from.Addr() != tt.gateway || from.Port() != local.Port() {
				t.Fatalf("guest saw client %s, want %s:%d", from, tt.gateway, local.Port())
			}
			if string(got) != from.String() {
				t.Fatalf("client read %q, want the guest's answer %q", got, from)
			}
			if n.Stats().TCP != 1 {
				t.Errorf("TCP = %d, want 1", n.Stats().TCP)
			}
		})
	}
}

func TestInboundTCPGuestNotListening(t *testing.T) {
	port := testkit.FreePort(t)
	_, n := inboundHarness(t, newFakePod(), testkit.Itoa(port))
	c, err := net.DialTimeout("tcp4", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port).String(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The pod's kernel completed the handshake; the guest's refusal then
	// resets the client's connection at once instead of leaving it open.
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = c.Read(make([]byte, 1))
	if err == nil || testkit.IsTimeout(err) {
		t.Fatalf("read from a port the guest does not listen on: %v, want a reset", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("reset took %v, want under 1s", d)
	}
	if n.Stats().Refused != 1 {
		t.Errorf("Refused = %d, want 1", n.Stats().Refused)
	}
}

func TestInboundUnlistedPortNotBound(t *testing.T) {
	port := testkit.FreePort(t)
	other := testkit.FreePort(t)
	inboundHarness(t, newFakePod(), testkit.Itoa(port))
	if c, err := net.DialTimeout("tcp4", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), other).String(), time.Second); err == nil {
		c.Close()
		t.Fatalf("port %d, not listed, accepted a connection", other)
	}
	if testkit.PortFree(port) {
		t.Fatalf("listed port %d is not bound", port)
	}
}

func TestInboundUDP(t *testing.T) {
	port := testkit.FreePort(t)
	g, n := inboundHarness(t, newFakePod(), testkit.Itoa(port)+"/udp")
	guestEcho(t, g, netip.AddrPortFrom(guest4.Addr(), port))
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dst := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
	var got string
	var from netip.AddrPort
	for try := 0; try < 3 && got == ""; try++ {
		got, from, err = testkit.UDPRoundTrip(c, dst, "ping", time.Second)
	}
	if err != nil {
		t.Fatal(err)
	}
	// The guest answers what it saw: the gateway and the client's port.
	want := netip.AddrPortFrom(gw4, uint16(c.LocalAddr().(*net.UDPAddr).Port)).String()
	if got != want || from != dst {
		t.Fatalf("reply %q from %s, want %q from %s", got, from, want, dst)
	}
	if n.Stats().UDP != 1 {
		t.Errorf("UDP = %d, want 1", n.Stats().UDP)
	}
}

// guestEcho answers each datagram to local with the sender's address.
func guestEcho(t *testing.T, g *memguest.Guest, local netip.AddrPort) {
	t.Helper()
	c, err := gonet.DialUDP(g.Stack, ptr(memguest.FullAddress(local)), nil, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			_, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			c.WriteTo([]byte(from.String()), from)
		}
	}()
}

func ptr[T any](v T) *T { return &v }

func TestInboundDefaultSkipsReservedAndEphemeral(t *testing.T) {
	pod := newFakePod()
	port := freeLowPort(t)
	pod.window = [2]uint16{port, port} // everything else "held", without sockets
	g, _ := inboundHarness(t, pod, "")
	first, last, err := inbound.KernelPod{}.EphemeralPorts()
	if err != nil {
		t.Fatal(err)
	}
	pod.mu.Lock()
	for _, p := range []uint16{ports.LibvirtMigration1, ports.LibvirtMigration2, first, last, uint16((uint32(first) + uint32(last)) / 2)} {
		if pod.requested[p] {
			t.Errorf("port %d was bound in the default (libvirt's or the pod's ephemeral range)", p)
		}
	}
	if port >= first && port <= last {
		t.Fatalf("this machine's ephemeral range %d-%d covers test port %d", first, last, port)
	}
	if !pod.requested[port] {
		t.Errorf("port %d, outside the ephemeral range, was not bound", port)
	}
	pod.mu.Unlock()
	seen := guestListen(t, g, netip.AddrPortFrom(guest4.Addr(), port))
	c, err := net.DialTimeout("tcp4", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port).String(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	select {
	case <-seen:
	case <-time.After(5 * time.Second):
		t.Fatal("default forwarding did not reach the guest")
	}
}

func TestInboundTCPLimit(t *testing.T) {
	port := testkit.FreePort(t)
	pod := newFakePod()
	g, n := harness(t, pod, false, func(c *inbound.Config) {
		set, _ := ports.Parse(testkit.Itoa(port))
		c.Ports, c.TCPLimit = &set, relay.NewLimit(1)
	})
	ln, err := gonet.ListenTCP(g.Stack, memguest.FullAddress(netip.AddrPortFrom(guest4.Addr(), port)), ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() { // hold every connection open
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	addr := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port).String()
	first, err := net.DialTimeout("tcp4", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	testkit.WaitFor(t, func() bool { return n.Stats().TCP == 1 }, "the first connection to reach the guest")
	// The reset may come before connect returns or on the first read.
	second, err := net.DialTimeout("tcp4", addr, 2*time.Second)
	if err == nil {
		defer second.Close()
		second.SetReadDeadline(time.Now().Add(3 * time.Second))
		_, err = second.Read(make([]byte, 1))
	}
	if err == nil || !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("connection beyond MaxTCP: %v, want a reset", err)
	}
	if n.Stats().Limited == 0 {
		t.Error("Limited not counted")
	}
}

func TestInboundGuestSilentClosedInBoundedTime(t *testing.T) {
	port := testkit.FreePort(t)
	g, n := inboundHarness(t, newFakePod(), testkit.Itoa(port)) // DialTimeout 2s
	g.RemoveAddress(t, guest4.Addr())                           // nobody answers ARP for 10.0.2.2: the SYN goes nowhere
	c, err := net.DialTimeout("tcp4", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port).String(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(8 * time.Second))
	_, err = c.Read(make([]byte, 1))
	if err == nil || testkit.IsTimeout(err) {
		t.Fatalf("client of a silent guest: %v, want its connection closed", err)
	}
	if d := time.Since(start); d < time.Second || d > 5*time.Second {
		t.Errorf("closed after %v, want about the 2s dial timeout", d)
	}
	if n.Stats().Refused != 1 {
		t.Errorf("Refused = %d, want 1", n.Stats().Refused)
	}
}
