package masq

import (
	"fmt"
	"log/slog"
	"net/netip"
	"testing"
)

func TestDNSPlan(t *testing.T) {
	gw := netip.MustParseAddr("10.0.2.1")
	addrs := func(ss ...string) []netip.Addr {
		var out []netip.Addr
		for _, s := range ss {
			out = append(out, netip.MustParseAddr(s))
		}
		return out
	}
	tests := []struct {
		name        string
		nameservers []netip.Addr
		offer       string
		forward     string
	}{
		{"pod resolvers offered as they are", addrs("10.96.0.10", "10.96.0.11"), "[10.96.0.10 10.96.0.11]", "invalid AddrPort"},
		{"systemd-resolved: gateway, forwarded", addrs("127.0.0.53"), "[10.0.2.1]", "127.0.0.53:53"},
		{"loopback beside a usable one: the usable one", addrs("127.0.0.53", "10.96.0.10"), "[10.96.0.10]", "invalid AddrPort"},
		{"loopback and IPv6 only: gateway, forwarded", addrs("127.0.0.1", "2001:db8::53"), "[10.0.2.1]", "127.0.0.1:53"},
		{"IPv6 only: nothing over DHCPv4", addrs("2001:db8::53"), "[]", "invalid AddrPort"},
		{"none: no option 6", nil, "[]", "invalid AddrPort"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			offer, forward := dnsPlan(gw, tt.nameservers, slog.New(slog.DiscardHandler))
			if got := fmt.Sprint(offer); got != tt.offer {
				t.Errorf("offer = %s, want %s", got, tt.offer)
			}
			if got := fmt.Sprint(forward); got != tt.forward {
				t.Errorf("forward = %s, want %s", got, tt.forward)
			}
		})
	}
}

func TestDNSPlan6(t *testing.T) {
	gw6 := netip.MustParseAddr("fd10:0:2::1")
	tests := []struct {
		name        string
		nameservers []string
		viaGateway  bool
		want        string
	}{
		{"pod IPv6 resolvers offered", []string{"10.96.0.10", "fd00::10", "::1"}, false, "[fd00::10]"},
		{"IPv4 only: none", []string{"10.96.0.10"}, false, "[]"},
		{"loopback: the gateway", []string{"127.0.0.53"}, true, "[fd10:0:2::1]"},
	}
	for _, tt := range tests {
		var ns []netip.Addr
		for _, s := range tt.nameservers {
			ns = append(ns, netip.MustParseAddr(s))
		}
		if got := fmt.Sprint(dnsPlan6(gw6, ns, tt.viaGateway)); got != tt.want {
			t.Errorf("%s: %s, want %s", tt.name, got, tt.want)
		}
	}
}

func TestIPv6ConfigNoRA(t *testing.T) {
	cfg := DefaultConfig()
	d6, ra := ipv6Config(cfg, 1500, nil, nil)
	if d6 == nil || ra == nil || d6.GuestIP != netip.MustParseAddr("fd10:0:2::2") || ra.MTU != 1500 {
		t.Fatalf("ipv6Config: %+v %+v", d6, ra)
	}
	cfg.NoRA = true
	if d6, ra := ipv6Config(cfg, 1500, nil, nil); d6 == nil || ra != nil {
		t.Errorf("--no-ra: DHCPv6 %v, RA %v; want DHCPv6 only", d6, ra)
	}
}
