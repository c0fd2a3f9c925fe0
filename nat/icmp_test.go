package nat_test

import (
	"net/netip"
	"testing"
	"time"
)

func TestICMPEcho(t *testing.T) {
	down4 := netip.MustParseAddr("198.18.9.9")
	tests := []struct {
		name    string
		noPing  bool
		dst     netip.Addr
		answer  bool
		proxied bool
	}{
		{"ipv4 host up", false, world4, true, true},
		{"ipv6 host up", false, world6, true, true},
		{"host down: no reply", false, down4, false, true},
		{"no ping sockets: no faked reply", true, world4, false, false},
		{"gateway answered by the stack", true, gw4, true, false},
		{"ipv6 gateway answered by the stack", true, gw6, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := newFakePod()
			pod.noPing = tt.noPing
			pod.up[world4], pod.up[world6] = true, true
			g, n := harness(t, pod, nil)
			err := g.Ping(tt.dst, time.Second)
			if (err == nil) != tt.answer {
				t.Fatalf("ping %s: %v; want answered=%v", tt.dst, err, tt.answer)
			}
			if got := n.Stats().ICMPOpened > 0; got != tt.proxied {
				t.Fatalf("echo proxied through the pod = %v, want %v", got, tt.proxied)
			}
		})
	}
}

func TestICMPSpoofedDropped(t *testing.T) {
	pod := newFakePod()
	pod.up[world4] = true
	g, n := harness(t, pod, nil)
	g.RemoveAddress(t, guest4.Addr())
	g.AddAddress(t, netip.MustParsePrefix("10.0.2.99/24"))
	if err := g.Ping(world4, 500*time.Millisecond); err == nil {
		t.Fatal("ping from a spoofed source answered")
	}
	if s := n.Stats(); s.DroppedSpoofed == 0 || s.ICMPOpened != 0 {
		t.Fatalf("stats = %+v; want a spoofed drop and no echo flow", s)
	}
}
