package nat_test

import (
	"net"
	"net/netip"
	"runtime"
	"runtime/debug"
	"sync"
	"testing"
	"time"

	"github.com/masqnet/masq/internal/testkit"
	"github.com/masqnet/masq/nat"
)

// floodNet is where the flood tests send: part of 198.18.0.0/15, and a
// sink of the fake pod (nothing is sent, nothing answers).
var floodNet = netip.MustParsePrefix("198.19.0.0/16")

// floodDst is the flood's i-th destination.
func floodDst(i int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)}), 9)
}

// floodSrc is the guest's i-th flood source port, clear of the guest
// stack's ephemeral ports.
func floodSrc(i int) netip.AddrPort { return netip.AddrPortFrom(guest4.Addr(), uint16(1000+i)) }

// tickingClock is a clock that advances 1 µs at each reading, so every
// use of a flow has a time of its own, and jumps when told.
func tickingClock() (now func() time.Time, jump func(time.Duration)) {
	var mu sync.Mutex
	t := time.Unix(1_000_000, 0)
	now = func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		t = t.Add(time.Microsecond)
		return t
	}
	jump = func(d time.Duration) { mu.Lock(); t = t.Add(d); mu.Unlock() }
	return now, jump
}

// flood sends one datagram from each of ports guest source ports to each
// of dsts destinations, source by source, through the UDP table as the
// packet path does (NAT.ForwardUDP): the guest's stack is skipped, since
// millions of datagrams through it take minutes under the race detector.
func flood(t *testing.T, n *nat.NAT, ports, dsts int) {
	t.Helper()
	payload := []byte("flood")
	for p := range ports {
		src := floodSrc(p)
		for d := range dsts {
			if !n.ForwardUDP(src, floodDst(d), payload) {
				t.Fatalf("datagram from %s to %s refused", src, floodDst(d))
			}
		}
	}
}

// floodPod is a fake pod whose floodNet takes anything.
func floodPod() *fakePod {
	pod := newFakePod()
	pod.sink = floodNet
	return pod
}

// liveHeap returns the bytes of live heap objects and goroutine stacks,
// after a collection.
func liveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc + m.StackInuse
}

// heldFromOS returns the memory the Go runtime holds from the operating
// system and has not returned: what RSS can be at most.
func heldFromOS() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.Sys - m.HeapReleased
}

const mib = 1 << 20

func TestUDPFloodMemoryBounded(t *testing.T) {
	// 4096 source ports × 1024 destinations each, the flood that grew masq
	// to 398 MiB before the bounds; 512 ports with -short. Either fills
	// the destination bound (64 flows of 1024) many times over.
	ports := 4096
	if testing.Short() {
		ports = 512
	}
	const dsts = 1024
	// floodHeapBound is what the flood may add to the live heap: the
	// bounds hold DefaultMaxUDPPeers (65536) entries at about 100 B
	// (6.3 MiB), and at most 64 flows with them; twice that leaves room
	// for the maps' growth, which doubles a map's slots at a time.
	const floodHeapBound = 16 * mib
	// returnSlack is how much more than before the flood the runtime may
	// still hold from the OS after the flows expired and masq returned
	// their memory: pages the test itself and the runtime's caches keep.
	const returnSlack = 4 * mib

	now, jump := tickingClock()
	_, n := harness(t, floodPod(), func(c *nat.Config) { c.Now = now })
	debug.FreeOSMemory()
	heap0, held0 := liveHeap(), heldFromOS()

	start := time.Now()
	flood(t, n, ports, dsts)
	testkit.WaitFor(t, func() bool { return n.FlowGoroutines() == n.UDPFlows() }, "evicted flows' goroutines to end")
	grown := liveHeap() - heap0
	s := n.Stats()
	t.Logf("%d×%d datagrams in %v: live heap +%.1f MiB, %d flows, %d destinations, %d evicted; held from the OS +%.1f MiB",
		ports, dsts, time.Since(start).Round(time.Millisecond), float64(grown)/mib, n.UDPFlows(), n.UDPPeers(),
		s.UDPEvicted, float64(heldFromOS()-held0)/mib)
	if grown > floodHeapBound {
		t.Errorf("live heap grew %.1f MiB, want at most %d MiB", float64(grown)/mib, floodHeapBound/mib)
	}
	if got := n.UDPPeers(); got > nat.DefaultMaxUDPPeers {
		t.Errorf("%d destinations held, want at most %d", got, nat.DefaultMaxUDPPeers)
	}
	if want := uint64(ports - nat.DefaultMaxUDPPeers/dsts); s.UDPEvicted < want {
		t.Errorf("UDPEvicted = %d, want at least %d", s.UDPEvicted, want)
	}

	jump(time.Hour)
	n.ExpireUDP(now())
	testkit.WaitFor(t, func() bool { return n.FlowGoroutines() == 0 }, "expired flows' goroutines to end")
	jump(time.Minute)
	n.ExpireUDP(now()) // the sweep after: the memory is garbage, and masq returns it
	held := heldFromOS()
	t.Logf("after expiry: held from the OS %+.1f MiB against before the flood, %d releases",
		(float64(held)-float64(held0))/mib, n.Stats().MemoryReleased)
	if n.Stats().MemoryReleased == 0 {
		t.Error("no memory returned to the OS after the flood expired")
	}
	if held > held0+returnSlack {
		t.Errorf("after expiry the runtime holds %.1f MiB more than before the flood, want at most %d MiB",
			float64(held-held0)/mib, returnSlack/mib)
	}
}

func TestUDPDNSAnsweredWhenTableFull(t *testing.T) {
	tests := []struct {
		name        string
		ports, dsts int
	}{
		{"flows full", nat.DefaultMaxUDPFlows, 1},
		{"destinations full", nat.DefaultMaxUDPPeers / 1024, 1024},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now, _ := tickingClock()
			pod := floodPod()
			dns := netip.AddrPortFrom(world4, 53)
			pod.route(dns, testkit.UDPEcho(t))
			g, n := harness(t, pod, func(c *nat.Config) { c.Now = now })
			flood(t, n, tt.ports, tt.dsts)
			if s := n.Stats(); s.UDPEvicted != 0 {
				t.Fatalf("the flood alone evicted %d flows; the table should be just full", s.UDPEvicted)
			}
			got, from, err := testkit.UDPRoundTrip(guestUDP(t, g, guest4.Addr()), dns, "query", 2*time.Second)
			if err != nil || got != "query" || from != dns {
				t.Fatalf("DNS with a full table: got %q from %s (%v), want the answer from %s", got, from, err, dns)
			}
			if s := n.Stats(); s.UDPEvicted != 1 {
				t.Errorf("UDPEvicted = %d, want 1", s.UDPEvicted)
			}
			if n.HasUDPFlow(floodSrc(0)) {
				t.Error("the least recently used flow was not the one evicted")
			}
			if !n.HasUDPFlow(floodSrc(tt.ports - 1)) {
				t.Error("the most recent flood flow was evicted")
			}
		})
	}
}

func TestUDPFlowLimitEvictsLeastRecentlyUsed(t *testing.T) {
	pod := newFakePod()
	dst := netip.AddrPortFrom(world4, 7)
	pod.route(dst, testkit.UDPEcho(t))
	g, n := harness(t, pod, func(c *nat.Config) { c.MaxUDPFlows = 2 })
	a, b, c := guestUDP(t, g, guest4.Addr()), guestUDP(t, g, guest4.Addr()), guestUDP(t, g, guest4.Addr())
	steps := []struct {
		conn        net.PacketConn
		wantEvicted uint64
	}{
		{a, 0}, {b, 0},
		{c, 1}, // evicts a's flow, the least recently used
		{a, 2}, // a new flow for a; evicts b's
		{c, 2}, // still open
	}
	for i, s := range steps {
		if _, _, err := testkit.UDPRoundTrip(s.conn, dst, "x", time.Second); err != nil {
			t.Fatalf("step %d: %v; a full table must not drop a new flow", i, err)
		}
		if got := n.Stats().UDPEvicted; got != s.wantEvicted {
			t.Fatalf("step %d: UDPEvicted = %d, want %d", i, got, s.wantEvicted)
		}
		if got := n.UDPFlows(); got > 2 {
			t.Fatalf("step %d: %d flows, want at most 2", i, got)
		}
	}
}

func TestUDPKnownFlowSendsWithoutAllocating(t *testing.T) {
	_, n := harness(t, floodPod(), nil)
	src, dst, payload := floodSrc(0), floodDst(0), []byte("x")
	n.ForwardUDP(src, dst, payload) // opens the flow and its destination
	if allocs := testing.AllocsPerRun(1000, func() { n.ForwardUDP(src, dst, payload) }); allocs != 0 {
		t.Errorf("%.1f allocations per datagram of a known flow, want 0", allocs)
	}
}
