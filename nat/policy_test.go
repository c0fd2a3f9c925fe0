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
