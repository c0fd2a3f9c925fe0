package inbound

import (
	"net/netip"
	"testing"
)

func TestSeenFrom(t *testing.T) {
	both := Config{Gateway4: netip.MustParseAddr("10.0.2.1"), Gateway6: netip.MustParseAddr("fd10:0:2::1")}
	only4 := Config{Gateway4: both.Gateway4}
	only6 := Config{Gateway6: both.Gateway6}
	tests := []struct {
		cfg          Config
		client, want string
	}{
		{both, "198.18.0.1:40000", "198.18.0.1:40000"},
		{both, "[::ffff:198.18.0.1]:40000", "198.18.0.1:40000"},
		{both, "[2001:db8::1]:40000", "[2001:db8::1]:40000"},
		{both, "127.0.0.1:5555", "10.0.2.1:5555"},
		{both, "127.9.9.9:5555", "10.0.2.1:5555"},
		{both, "[::1]:5555", "[fd10:0:2::1]:5555"},
		{only4, "[::1]:5555", "10.0.2.1:5555"}, // no IPv6 gateway: the IPv4 one
		{only6, "127.0.0.1:5555", "[fd10:0:2::1]:5555"},
	}
	for _, tt := range tests {
		if got := tt.cfg.seenFrom(netip.MustParseAddrPort(tt.client)); got != netip.MustParseAddrPort(tt.want) {
			t.Errorf("seenFrom(%s) = %s, want %s", tt.client, got, tt.want)
		}
	}
}

func TestFamily(t *testing.T) {
	g4, g6 := netip.MustParseAddr("10.0.2.2"), netip.MustParseAddr("fd10:0:2::2")
	for _, tt := range []struct {
		cfg  Config
		want Family
	}{
		{Config{Guest4: g4, Guest6: g6}, DualStack},
		{Config{Guest4: g4}, IPv4},
		{Config{Guest6: g6}, IPv6},
	} {
		if got := tt.cfg.family(); got != tt.want {
			t.Errorf("family of %+v = %v, want %v", tt.cfg, got, tt.want)
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

func TestParsePortRange(t *testing.T) {
	for _, tt := range []struct {
		in          string
		first, last uint16
		ok          bool
	}{
		{"32768\t60999\n", 32768, 60999, true},
		{"1024 1024", 1024, 1024, true},
		{"60999 32768", 0, 0, false},
		{"0 100", 0, 0, false},
		{"", 0, 0, false},
	} {
		first, last, err := parsePortRange(tt.in)
		if (err == nil) != tt.ok || first != tt.first || last != tt.last {
			t.Errorf("parsePortRange(%q) = %d, %d, %v; want %d, %d, ok=%v", tt.in, first, last, err, tt.first, tt.last, tt.ok)
		}
	}
}
