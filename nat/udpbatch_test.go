package nat_test

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/masqnet/masq/flowtable"
	"github.com/masqnet/masq/nat"
)

// udpReceiver is a loopback UDP socket the test reads datagrams from.
func udpReceiver(t *testing.T) (*net.UDPConn, netip.AddrPort) {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadBuffer(4 << 20)
	t.Cleanup(func() { c.Close() })
	return c, netip.MustParseAddrPort(c.LocalAddr().String())
}

// receive reads n datagrams from c, each within wait.
func receive(t *testing.T, c *net.UDPConn, n int, wait time.Duration) [][]byte {
	t.Helper()
	var got [][]byte
	buf := make([]byte, 65536)
	for len(got) < n {
		c.SetReadDeadline(time.Now().Add(wait))
		m, err := c.Read(buf)
		if err != nil {
			t.Fatalf("after %d of %d datagrams: %v", len(got), n, err)
		}
		got = append(got, bytes.Clone(buf[:m]))
	}
	return got
}

// nothingFor fails the test when c receives a datagram within d.
func nothingFor(t *testing.T, c *net.UDPConn, d time.Duration) {
	t.Helper()
	var buf [2048]byte
	c.SetReadDeadline(time.Now().Add(d))
	if n, err := c.Read(buf[:]); err == nil {
		t.Fatalf("a %d-byte datagram arrived while the burst was open", n)
	}
}

// datagram is the i-th test datagram of size bytes: its bytes say which
// it is, so a reordered or cut one shows.
func datagram(i, size int) []byte {
	b := make([]byte, size)
	for j := range b {
		b[j] = byte(i*7 + j)
	}
	return b
}

// warmUp sends one datagram from c to dst and waits for it at rc, ending
// bursts with endBurst meanwhile (nil: the link does): the guest has
// resolved its gateway after it. (Datagrams a guest sends while it
// resolves wait in gVisor's queue, which later ones can overtake.)
func warmUp(t *testing.T, c net.PacketConn, dst netip.AddrPort, rc *net.UDPConn, endBurst func()) {
	t.Helper()
	if _, err := c.WriteTo([]byte("warm-up"), net.UDPAddrFromAddrPort(dst)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		if endBurst != nil {
			endBurst()
		}
		rc.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		if n, err := rc.Read(buf); err == nil {
			if string(buf[:n]) != "warm-up" {
				t.Fatalf("warm-up: got %q", buf[:n])
			}
			return
		}
	}
	t.Fatal("warm-up datagram not received within 5s")
}

// waitFromGuest waits until the NAT has taken want datagrams from the
// guest (counted as it takes them, batched or not).
func waitFromGuest(t *testing.T, n *nat.NAT, want uint64) {
	t.Helper()
	var got uint64
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		got = 0
		for _, f := range n.Flows().Flows(flowtable.Filter{}) {
			got += f.PacketsFromGuest
		}
		if got >= want {
			return
		}
	}
	t.Fatalf("the NAT took %d datagrams from the guest within 5s, want %d", got, want)
}

// gsoCounts returns the fake pod's GSO sends and the datagrams in them.
func gsoCounts(p *fakePod) (sends, datagrams int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.gsoSends, p.gsoDatagrams
}

// TestUDPBurstBatched sends datagrams from the guest while the link's
// burst stays open (the test holds the NAT's burst end), then ends it, and
// checks what reached the destination and how: every datagram, whole and
// in order, in as few GSO sends as the batch rules allow.
func TestUDPBurstBatched(t *testing.T) {
	sizes := func(n, size int, last ...int) []int {
		s := make([]int, n)
		for i := range s {
			s[i] = size
		}
		return append(s, last...)
	}
	tests := []struct {
		name  string
		sizes []int
		// beforeEnd: datagrams the destination has before the burst ends
		// (full batches, and batches a datagram that does not fit ended).
		beforeEnd int
		// sends and batched: GSO sends and the datagrams they carried
		// once the burst ended.
		sends, batched int
	}{
		{"one datagram goes alone", sizes(1, 1000), 0, 0, 0},
		{"equal sizes, one send", sizes(10, 1000), 0, 1, 10},
		{"a shorter last ends the batch", sizes(10, 1000, 100), 11, 1, 11},
		{"a bigger one starts a new batch", sizes(5, 500, 1000, 1000), 5, 2, 7},
		{"64 per send at most", sizes(100, 1000), nat.MaxGSOSegments, 2, 100},
		{"64 KB per send at most", sizes(100, 1200), 54, 2, 100},
		{"bytes bounded", sizes(20, 8000), 16, 3, 20},
		{"empty datagrams go alone", sizes(3, 0), 3, 0, 0},
		{"an empty one lets the held ones go first", sizes(2, 100, 0), 3, 1, 2},
		{"an empty one between held ones", []int{1000, 1000, 0, 1000}, 3, 1, 2},
		{"an empty one after one held", []int{700, 0}, 2, 0, 0},
		{"empty ones between batches", []int{500, 500, 500, 0, 0, 500, 500}, 5, 2, 5},
		{"jumbo datagrams go alone", sizes(3, 40000), 3, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := newFakePod()
			rc, to := udpReceiver(t)
			dst := netip.AddrPortFrom(world4, 9)
			pod.route(dst, to)
			var endBurst func()
			g, n := harnessLink(t, 65520, true, pod, func(c *nat.Config) {
				c.BurstEnd = func(f func()) { endBurst = f }
			})
			c := guestUDP(t, g, guest4.Addr())
			warmUp(t, c, dst, rc, endBurst)
			for i, size := range tt.sizes {
				if _, err := c.WriteTo(datagram(i, size), net.UDPAddrFromAddrPort(dst)); err != nil {
					t.Fatal(err)
				}
			}
			waitFromGuest(t, n, uint64(1+len(tt.sizes)))
			got := receive(t, rc, tt.beforeEnd, 5*time.Second)
			nothingFor(t, rc, 50*time.Millisecond)
			endBurst()
			got = append(got, receive(t, rc, len(tt.sizes)-tt.beforeEnd, 5*time.Second)...)
			for i, size := range tt.sizes {
				if !bytes.Equal(got[i], datagram(i, size)) {
					t.Fatalf("datagram %d: got %d bytes %x…, want %d bytes %x…", i, len(got[i]), got[i][:min(8, len(got[i]))], size, datagram(i, min(8, size)))
				}
			}
			if sends, batched := gsoCounts(pod); sends != tt.sends || batched != tt.batched {
				t.Errorf("GSO sends %d with %d datagrams, want %d with %d", sends, batched, tt.sends, tt.batched)
			}
		})
	}
}

// TestUDPBurstFlowsInterleaved: datagrams of two guest flows, alternating
// in one burst, each reach their destination in order; a batch holds one
// flow's, so each switch sends what was held.
func TestUDPBurstFlowsInterleaved(t *testing.T) {
	pod := newFakePod()
	var endBurst func()
	g, n := harnessLink(t, 1500, true, pod, func(c *nat.Config) { c.BurstEnd = func(f func()) { endBurst = f } })
	type flow struct {
		rc  *net.UDPConn
		dst netip.AddrPort
		c   net.PacketConn
	}
	var flows [2]flow
	for i := range flows {
		rc, to := udpReceiver(t)
		dst := netip.AddrPortFrom(world4, uint16(10+i))
		pod.route(dst, to)
		flows[i] = flow{rc, dst, guestUDP(t, g, guest4.Addr())}
		warmUp(t, flows[i].c, dst, rc, endBurst)
	}
	const rounds = 8
	for r := range rounds {
		for i, f := range flows {
			if _, err := f.c.WriteTo(datagram(10*r+i, 700), net.UDPAddrFromAddrPort(f.dst)); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitFromGuest(t, n, 2*(1+rounds))
	endBurst()
	for i, f := range flows {
		got := receive(t, f.rc, rounds, 5*time.Second)
		for r := range rounds {
			if !bytes.Equal(got[r], datagram(10*r+i, 700)) {
				t.Fatalf("flow %d datagram %d: wrong bytes (reordered or mixed up)", i, r)
			}
		}
	}
}

// TestUDPBurstGSORefused: a kernel that refuses to segment (EINVAL: a
// path MTU below the datagrams) loses nothing: the batch goes one
// datagram at a time, and the flow stops batching.
func TestUDPBurstGSORefused(t *testing.T) {
	pod := newFakePod()
	pod.refuseGSO = true
	rc, to := udpReceiver(t)
	dst := netip.AddrPortFrom(world4, 9)
	pod.route(dst, to)
	var endBurst func()
	g, n := harnessLink(t, 1500, true, pod, func(c *nat.Config) { c.BurstEnd = func(f func()) { endBurst = f } })
	c := guestUDP(t, g, guest4.Addr())
	warmUp(t, c, dst, rc, endBurst)
	send := func(from, to int) {
		for i := from; i < to; i++ {
			if _, err := c.WriteTo(datagram(i, 1000), net.UDPAddrFromAddrPort(dst)); err != nil {
				t.Fatal(err)
			}
		}
	}
	send(0, 5)
	waitFromGuest(t, n, 1+5)
	nothingFor(t, rc, 50*time.Millisecond)
	endBurst()
	got := receive(t, rc, 5, 5*time.Second)
	// Refused once: the flow's next datagrams leave at once, unbatched.
	send(5, 10)
	got = append(got, receive(t, rc, 5, 5*time.Second)...)
	for i := range 10 {
		if !bytes.Equal(got[i], datagram(i, 1000)) {
			t.Fatalf("datagram %d: wrong bytes", i)
		}
	}
	if s := n.Stats(); s.UDPSendFailed != 0 {
		t.Errorf("UDPSendFailed = %d, want 0: the refused batch must be resent, not counted lost", s.UDPSendFailed)
	}
}

// TestUDPBurstEndedByLink: over each of masq's links that report their
// bursts' ends, a stream of datagrams arrives whole and in order with no
// hand ending bursts, most of it in GSO sends.
func TestUDPBurstEndedByLink(t *testing.T) {
	for _, l := range []benchLink{{name: "tap", mtu: 1500, offload: true}, {name: "socket", mtu: 1500, socket: true},
		{name: "vhost-user", mtu: 1500, vhost: true}} {
		t.Run(l.name, func(t *testing.T) {
			pod := newFakePod()
			rc, to := udpReceiver(t)
			dst := netip.AddrPortFrom(world4, 9)
			pod.route(dst, to)
			g := benchHarness(t, l, pod)
			c := guestUDP(t, g, guest4.Addr())
			warmUp(t, c, dst, rc, nil)
			// In rounds of 100 (140 KB), each read before the next: the
			// receiver's socket buffer (212,992 bytes by default) must
			// not be what drops one.
			const count, round = 2000, 100
			for start := 0; start < count; start += round {
				for i := start; i < start+round; i++ {
					if _, err := c.WriteTo(datagram(i, 1400), net.UDPAddrFromAddrPort(dst)); err != nil {
						t.Fatal(err)
					}
				}
				got := receive(t, rc, round, 5*time.Second)
				for i := range round {
					if !bytes.Equal(got[i], datagram(start+i, 1400)) {
						t.Fatalf("datagram %d: wrong bytes", start+i)
					}
				}
			}
			// How many went in batches depends on the scheduler.
			sends, batched := gsoCounts(pod)
			t.Logf("%d datagrams, %d of them in %d GSO sends", count, batched, sends)
		})
	}
}

func TestUDPBatchSendsWithoutAllocating(t *testing.T) {
	pod := newFakePod()
	rc, to := udpReceiver(t)
	dst := netip.AddrPortFrom(world4, 9)
	pod.route(dst, to)
	var endBurst func()
	_, n := harness(t, pod, func(c *nat.Config) { c.BurstEnd = func(f func()) { endBurst = f } })
	src := netip.AddrPortFrom(guest4.Addr(), 4000)
	payload := make([]byte, 1000)
	burst := func() {
		for range 16 {
			n.ForwardUDP(src, dst, payload)
		}
		endBurst()
	}
	burst() // opens the flow and its destination
	if allocs := testing.AllocsPerRun(100, burst); allocs != 0 {
		t.Errorf("%.1f allocations per burst of 16 batched datagrams, want 0", allocs)
	}
	// One burst above, and AllocsPerRun's own warm-up run before its 100.
	if sends, batched := gsoCounts(pod); sends != 102 || batched != 16*102 {
		t.Errorf("GSO sends %d with %d datagrams, want 102 with %d", sends, batched, 16*102)
	}
	receive(t, rc, 16, 5*time.Second) // they arrived
}

// TestKernelConnSendsWithoutAllocating: the kernel pod socket's three
// sends (plain, with a TTL, a GSO batch) reach a loopback receiver, and
// none allocates.
func TestKernelConnSendsWithoutAllocating(t *testing.T) {
	rc, to := udpReceiver(t)
	c, err := nat.KernelPod{}.ListenUDP(to.Addr(), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	gc, ok := c.(nat.GSOConn)
	if !ok {
		t.Fatalf("%T is not a GSOConn", c)
	}
	payload := make([]byte, 1000)
	batch := make([]byte, 4000)
	sends := []struct {
		name      string
		send      func() error
		datagrams int
	}{
		{"plain", func() error { _, err := c.WriteToUDPAddrPort(payload, to); return err }, 1},
		{"ttl", func() error { _, err := gc.WriteToTTL(payload, to, 5, true); return err }, 1},
		{"gso", func() error { return gc.WriteGSO(batch, 1000, to, 5, true) }, 4},
	}
	for _, s := range sends {
		if err := s.send(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		for _, d := range receive(t, rc, s.datagrams, 5*time.Second) {
			if len(d) != 1000 {
				t.Fatalf("%s: a %d-byte datagram, want 1000", s.name, len(d))
			}
		}
		if allocs := testing.AllocsPerRun(20, func() { s.send() }); allocs != 0 {
			t.Errorf("%s: %.1f allocations per send, want 0", s.name, allocs)
		}
		receive(t, rc, 21*s.datagrams, 5*time.Second)
	}
}
