package nat

import (
	"net/netip"
	"testing"
	"time"
)

func TestIdleTimeouts(t *testing.T) {
	tm := idleTimeouts{udp: 120 * time.Second, short: 30 * time.Second}
	tests := []struct {
		echo bool
		dst  string
		want time.Duration
	}{
		{false, "198.18.0.1:53", 30 * time.Second},
		{false, "[2001:db8::1]:53", 30 * time.Second},
		{false, "198.18.0.1:123", 120 * time.Second},
		{false, "198.18.0.1:5353", 120 * time.Second},
		{true, "198.18.0.1:0", 30 * time.Second},
		{true, "198.18.0.1:4242", 30 * time.Second}, // an echo flow's port is its identifier
	}
	for _, tt := range tests {
		if got := tm.idle(tt.echo, netip.MustParseAddrPort(tt.dst)); got != tt.want {
			t.Errorf("idle(echo=%v, %s) = %v, want %v", tt.echo, tt.dst, got, tt.want)
		}
	}
}

func TestSeenFrom(t *testing.T) {
	p := Policy{Guest4: netip.MustParseAddr("10.0.2.2"), Net4: netip.MustParsePrefix("10.0.2.0/24"),
		Guest6: netip.MustParseAddr("fd10:0:2::2"), Net6: netip.MustParsePrefix("fd10:0:2::/120")}
	only4 := Policy{Guest4: p.Guest4, Net4: p.Net4}
	tests := []struct {
		p            Policy
		client, want string
	}{
		{p, "198.18.0.1:40000", "198.18.0.1:40000"},
		{p, "[::ffff:198.18.0.1]:40000", "198.18.0.1:40000"},
		{p, "[2001:db8::1]:40000", "[2001:db8::1]:40000"},
		{p, "127.0.0.1:5555", "10.0.2.1:5555"},
		{p, "[::1]:5555", "[fd10:0:2::1]:5555"},
		{only4, "[::1]:5555", "10.0.2.1:5555"}, // no IPv6 gateway: the IPv4 one
	}
	for _, tt := range tests {
		if got := tt.p.seenFrom(netip.MustParseAddrPort(tt.client)); got != netip.MustParseAddrPort(tt.want) {
			t.Errorf("seenFrom(%s) = %s, want %s", tt.client, got, tt.want)
		}
	}
}

func TestFDBudget(t *testing.T) {
	tests := []struct{ limit, open, want int }{
		{1024, 10, 1024 - 10 - 512},       // half kept for the guest's flows
		{20000, 30, 20000 - 30 - 10000},   // this machine's hard limit
		{1 << 20, 30, 1<<20 - 30 - 16384}, // the reserve stops at 16384
		{100, 90, 0},                      // never negative
		{unlimitedFDs, freshFDs, unlimitedFDs - freshFDs - 16384},
	}
	for _, tt := range tests {
		if got := fdBudget(tt.limit, tt.open); got != tt.want {
			t.Errorf("fdBudget(%d, %d) = %d, want %d", tt.limit, tt.open, got, tt.want)
		}
	}
}
