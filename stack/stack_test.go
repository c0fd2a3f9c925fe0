package stack_test

import (
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"

	"github.com/masqnet/masq/internal/memguest"
	"github.com/masqnet/masq/link"
	"github.com/masqnet/masq/stack"
)

var (
	gw4    = netip.MustParsePrefix("10.0.2.1/24")
	gw6    = netip.MustParsePrefix("fd10:0:2::1/120")
	guest4 = netip.MustParsePrefix("10.0.2.2/24")
	guest6 = netip.MustParsePrefix("fd10:0:2::2/120")
)

// newPair joins a masq Stack and an in-memory guest and closes both when
// the test ends.
func newPair(t *testing.T, cfg stack.Config) (*stack.Stack, *memguest.Guest) {
	t.Helper()
	g, fd := memguest.New(t, cfg.MTU)
	l, err := link.NewFD(fd, cfg.MTU, nil)
	if err != nil {
		unix.Close(fd)
		t.Fatal(err)
	}
	s, err := stack.New(l, cfg)
	if err != nil {
		unix.Close(fd)
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		s.Close()
		unix.Close(fd)
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Close()
		unix.Close(fd)
	})
	return s, g
}

func TestGatewayAnswersPing(t *testing.T) {
	tests := []struct {
		name  string
		guest netip.Prefix
		dst   netip.Addr
	}{
		{"ipv4 via ARP", guest4, gw4.Addr()},
		{"ipv6 via NDP", guest6, gw6.Addr()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, g := newPair(t, stack.Config{MTU: 1500, IPv4: gw4, IPv6: gw6})
			g.AddAddress(t, tt.guest)
			if err := g.Ping(tt.dst, 5*time.Second); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestNoIPv6WhenUnconfigured(t *testing.T) {
	_, g := newPair(t, stack.Config{MTU: 1500, IPv4: gw4})
	g.AddAddress(t, guest6)
	if err := g.Ping(gw6.Addr(), 300*time.Millisecond); err == nil {
		t.Fatal("gateway answered IPv6 ping with no IPv6 address configured")
	}
}

func TestGatewayIdentity(t *testing.T) {
	s, _ := newPair(t, stack.Config{MTU: 9000, IPv4: gw4, IPv6: gw6})
	ns := s.Netstack()
	info, ok := ns.NICInfo()[s.NIC()]
	if !ok {
		t.Fatal("no guest NIC")
	}
	if info.LinkAddress != stack.GatewayMAC {
		t.Errorf("link address = %s, want %s", info.LinkAddress, stack.GatewayMAC)
	}
	if info.MTU != 9000 {
		t.Errorf("MTU = %d, want 9000", info.MTU)
	}
	want := map[tcpip.Address]bool{
		tcpip.AddrFrom4(gw4.Addr().As4()):   false,
		tcpip.AddrFrom16(gw6.Addr().As16()): false,
	}
	for _, pa := range info.ProtocolAddresses {
		if _, ok := want[pa.AddressWithPrefix.Address]; ok {
			want[pa.AddressWithPrefix.Address] = true
		}
	}
	for a, found := range want {
		if !found {
			t.Errorf("gateway address %s missing from %v", a, info.ProtocolAddresses)
		}
	}
}

// TestOnlyGatewayResolves checks that masq answers ARP and NDP for the
// gateway alone: a spoofing NIC would otherwise claim every address, the
// guest's own included, and fail the guest's duplicate address detection.
func TestOnlyGatewayResolves(t *testing.T) {
	for _, dst := range []string{"10.0.2.77", "10.0.2.2", "fd10:0:2::77", "fd10:0:2::2"} {
		t.Run(dst, func(t *testing.T) {
			_, g := newPair(t, stack.Config{MTU: 1500, IPv4: gw4, IPv6: gw6})
			g.AddAddress(t, netip.MustParsePrefix("10.0.2.3/24"))
			g.AddAddress(t, netip.MustParsePrefix("fd10:0:2::3/120"))
			a := netip.MustParseAddr(dst)
			g.Ping(a, 1500*time.Millisecond) // makes the guest resolve a
			if mac, ok := g.Neighbor(a); ok {
				t.Fatalf("guest resolved %s to %s: masq answered for an address that is not the gateway's", dst, mac)
			}
			if err := g.Ping(gw4.Addr(), 2*time.Second); err != nil {
				t.Fatalf("gateway no longer answers: %v", err)
			}
		})
	}
}
