package masq_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/masqnet/masq"
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"

	"github.com/masqnet/masq/dhcp"
	"github.com/masqnet/masq/internal/memguest"
	"github.com/masqnet/masq/ports"
)

// startMasq runs masq.Run against an in-memory guest and stops it (and
// checks it stopped cleanly) when the test ends.
func startMasq(t *testing.T, mtu uint32, mod func(*masq.Config)) *memguest.Guest {
	t.Helper()
	g, fd := memguest.New(t, mtu)
	startMasqNoGuest(t, mtu, func(c *masq.Config) {
		c.TapFD = fd
		if mod != nil {
			mod(c)
		}
	})
	return g
}

// startMasqNoGuest is startMasq with no link made for the guest: mod
// names one.
func startMasqNoGuest(t *testing.T, mtu uint32, mod func(*masq.Config)) {
	t.Helper()
	cfg := masq.DefaultConfig()
	cfg.MTU = mtu
	cfg.Hostname = "vm1"
	cfg.ResolvConf = "testdata/resolv/kubernetes.conf"
	noPorts, err := ports.New()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Ports = &noPorts // forward nothing: unit tests open no ports to the machine
	cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if mod != nil {
		mod(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- masq.Run(ctx, cfg) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v after cancel, want nil", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Run did not return within 10s of cancel")
		}
	})
}

// testWriter sends log lines to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// dhcpConn opens a guest UDP socket on port 68 bound to local, broadcast
// allowed.
func dhcpConn(t *testing.T, g *memguest.Guest, local netip.Addr) *gonet.UDPConn {
	t.Helper()
	var wq waiter.Queue
	ep, terr := g.Stack.NewEndpoint(udp.ProtocolNumber, ipv4.ProtocolNumber, &wq)
	if terr != nil {
		t.Fatal(terr)
	}
	ep.SocketOptions().SetBroadcast(true)
	if terr := ep.Bind(memguest.FullAddress(netip.AddrPortFrom(local, dhcp.ClientPort))); terr != nil {
		t.Fatal(terr)
	}
	c := gonet.NewUDPConn(&wq, ep)
	t.Cleanup(func() { c.Close() })
	return c
}

// exchange sends req to dst until a reply with req's xid arrives (as a DHCP
// client retransmits), for at most 10 s.
func exchange(t *testing.T, c *gonet.UDPConn, dst netip.AddrPort, req *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	t.Helper()
	buf := make([]byte, 2048)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := c.WriteTo(req.ToBytes(), net.UDPAddrFromAddrPort(dst)); err != nil {
			t.Fatalf("send %s: %v", req.MessageType(), err)
		}
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		for {
			n, _, err := c.ReadFrom(buf)
			if err != nil {
				break // timeout: retransmit
			}
			resp, err := dhcpv4.FromBytes(buf[:n])
			if err == nil && resp.TransactionID == req.TransactionID {
				return resp
			}
		}
	}
	t.Fatalf("no reply to %s within 10s", req.MessageType())
	return nil
}

func TestDORAAndRenewalInMemory(t *testing.T) {
	g := startMasq(t, 9000, nil)
	mac := net.HardwareAddr(memguest.MAC)
	bcast := netip.MustParseAddrPort("255.255.255.255:67")

	// An unconfigured client sends from 0.0.0.0.
	g.AddAddress(t, netip.MustParsePrefix("0.0.0.0/0"))
	c := dhcpConn(t, g, netip.IPv4Unspecified())
	disc, err := dhcpv4.NewDiscovery(mac, dhcpv4.WithRequestedOptions(dhcpv4.OptionInterfaceMTU))
	if err != nil {
		t.Fatal(err)
	}
	offer := exchange(t, c, bcast, disc)
	checkLease(t, offer, dhcpv4.MessageTypeOffer)
	req, err := dhcpv4.NewRequestFromOffer(offer)
	if err != nil {
		t.Fatal(err)
	}
	ack := exchange(t, c, bcast, req)
	checkLease(t, ack, dhcpv4.MessageTypeAck)
	c.Close()

	// Configured: renew by unicast to the server, from the leased address.
	g.RemoveAddress(t, netip.IPv4Unspecified())
	g.AddAddress(t, netip.MustParsePrefix("10.0.2.2/24"))
	c = dhcpConn(t, g, netip.MustParseAddr("10.0.2.2"))
	renew, err := dhcpv4.New(
		dhcpv4.WithHwAddr(mac),
		dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithClientIP(net.IPv4(10, 0, 2, 2)),
	)
	if err != nil {
		t.Fatal(err)
	}
	checkLease(t, exchange(t, c, netip.MustParseAddrPort("10.0.2.1:67"), renew), dhcpv4.MessageTypeAck)
}

// checkLease checks every option of a lease answer against startMasq's
// configuration and testdata/resolv/kubernetes.conf.
func checkLease(t *testing.T, m *dhcpv4.DHCPv4, want dhcpv4.MessageType) {
	t.Helper()
	if got := m.MessageType(); got != want {
		t.Fatalf("message type = %s, want %s", got, want)
	}
	eq := func(name string, got, wantV any) {
		t.Helper()
		if fmt.Sprint(got) != fmt.Sprint(wantV) {
			t.Errorf("%s: %s = %v, want %v", want, name, got, wantV)
		}
	}
	eq("yiaddr", m.YourIPAddr.String(), "10.0.2.2")
	eq("mask (1)", net.IP(m.SubnetMask()).String(), "255.255.255.0")
	eq("router (3)", m.Router(), []net.IP{net.IPv4(10, 0, 2, 1)})
	eq("dns (6)", m.DNS(), []net.IP{net.IPv4(10, 96, 0, 10)})
	eq("hostname (12)", m.HostName(), "vm1")
	eq("domain (15)", m.DomainName(), "default.svc.cluster.local")
	eq("broadcast (28)", m.BroadcastAddress().String(), "10.0.2.255")
	eq("server id (54)", m.ServerIdentifier().String(), "10.0.2.1")
	eq("lease (51)", m.IPAddressLeaseTime(0) > 0, true)
	if s := m.DomainSearch(); s == nil {
		t.Errorf("%s: no search list (119)", want)
	} else {
		eq("search (119)", s.Labels, []string{"default.svc.cluster.local", "svc.cluster.local", "cluster.local"})
	}
	mtu, err := dhcpv4.GetUint16(dhcpv4.OptionInterfaceMTU, m.Options)
	if err != nil {
		t.Errorf("%s: MTU option (26): %v", want, err)
	}
	eq("mtu (26)", mtu, uint16(9000))
}

// TestRouterAdvertisement: an in-memory guest, whose IPv6 handles Router
// Advertisements as a host does, learns its default router from masq's
// (unsolicited, at start):
// the gateway's link-local address, with the Managed flag sending it to
// DHCPv6 for its address.
func TestRouterAdvertisement(t *testing.T) {
	g := startMasq(t, 1500, nil)
	want := netip.MustParseAddr("fe80::ff:fe00:0") // EUI-64 of 02:00:00:00:00:00
	deadline := time.Now().Add(10 * time.Second)   // the guest solicits within 1 s; masq answers at once
	for time.Now().Before(deadline) && !slices.Contains(g.DefaultRouters(), want) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := g.DefaultRouters(); !slices.Contains(got, want) {
		t.Fatalf("default routers learned from RAs: %v, want %s", got, want)
	}
	if c := g.DHCPv6Config(); c != ipv6.DHCPv6ManagedAddress {
		t.Errorf("DHCPv6 configuration from the RA: %v, want managed", c)
	}
}

// TestNoRouterAdvertisement: with NoRA the guest learns no router.
func TestNoRouterAdvertisement(t *testing.T) {
	g := startMasq(t, 1500, func(c *masq.Config) { c.NoRA = true })
	time.Sleep(2 * time.Second) // past masq's first advertisement, which comes at once when on
	if got := g.DefaultRouters(); len(got) != 0 {
		t.Fatalf("default routers with NoRA: %v, want none", got)
	}
}

// TestBadTapFDIsAConfigErrorAndClosed: an inherited fd that is no tap is a
// configuration error (the command exits 2), and Run, which owns the fd
// either way, closes it.
func TestBadTapFDIsAConfigErrorAndClosed(t *testing.T) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[1])
	cfg := masq.DefaultConfig()
	cfg.TapFD, cfg.MTU = p[0], 1500
	cfg.ResolvConf = "testdata/resolv/kubernetes.conf"
	cfg.Logger = slog.New(slog.DiscardHandler)
	err := masq.Run(context.Background(), cfg)
	var ce *masq.ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("Run with a pipe as the tap: %v, want a ConfigError", err)
	}
	if _, err := unix.FcntlInt(uintptr(p[0]), unix.F_GETFD, 0); err != unix.EBADF {
		t.Fatalf("the inherited fd is still open after Run (fcntl: %v)", err)
	}
}
