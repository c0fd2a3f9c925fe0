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
