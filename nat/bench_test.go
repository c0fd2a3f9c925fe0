package nat_test

import (
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/masqnet/masq/internal/memguest"
	"github.com/masqnet/masq/internal/testkit"
	"github.com/masqnet/masq/nat"
)

// The benchmarks run the whole in-memory path: guest gVisor stack, the
// socketpair link, masq's stack and NAT, and a loopback server. Their
// allocations include the guest stack's and the test's own, so they bound
// masq's from above.

const benchChunk = 64 << 10

// benchLink is a link the TCP benchmarks run over.
type benchLink struct {
	name    string
	mtu     uint32
	offload bool // masq's tap link: virtio-net headers, TSO
	socket  bool // masq's --socket link (QEMU's stream netdev)
	vhost   bool // masq's --vhost-user link (shared rings, TSO)
}

// benchLinks: plain frames at each MTU, the tap link at 1500, the socket
// link at each MTU, the vhost-user link at 1500.
var benchLinks = []benchLink{{"mtu=1500", 1500, false, false, false}, {"mtu=65520", 65520, false, false, false},
	{"mtu=1500-vnet", 1500, true, false, false},
	{"mtu=1500-socket", 1500, false, true, false}, {"mtu=65520-socket", 65520, false, true, false},
	{"mtu=1500-vhost-user", 1500, false, false, true}}

func BenchmarkTCPGuestToPod(b *testing.B) {
	for _, l := range benchLinks {
		b.Run(l.name, func(b *testing.B) { benchTCPGuestToPod(b, l) })
	}
}

func BenchmarkTCPPodToGuest(b *testing.B) {
	for _, l := range benchLinks {
		b.Run(l.name, func(b *testing.B) { benchTCPPodToGuest(b, l) })
	}
}

func benchTCPGuestToPod(b *testing.B, l benchLink) {
	pod := newFakePod()
	dst := netip.AddrPortFrom(world4, 9)
	pod.route(dst, tcpServer(b, func(c net.Conn) { io.Copy(io.Discard, c) }))
	g := benchHarness(b, l, pod)
	c, err := dial(g, dst, 5*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, benchChunk)
	b.SetBytes(benchChunk)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
}

func benchTCPPodToGuest(b *testing.B, l benchLink) {
	pod := newFakePod()
	dst := netip.AddrPortFrom(world4, 19)
	pod.route(dst, tcpServer(b, func(c net.Conn) {
		buf := make([]byte, benchChunk)
		for {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	}))
	g := benchHarness(b, l, pod)
	c, err := dial(g, dst, 5*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, benchChunk)
	b.SetBytes(benchChunk)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := io.ReadFull(c, buf); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUDPRoundTrip(b *testing.B) {
	pod := newFakePod()
	dst := netip.AddrPortFrom(world4, 7)
	pod.route(dst, testkit.UDPEcho(b))
	g, _ := harness(b, pod, nil)
	c := guestUDP(b, g, guest4.Addr())
	msg := make([]byte, 1400)
	buf := make([]byte, 2048)
	to := net.UDPAddrFromAddrPort(dst)
	// Prime the flow.
	if _, _, err := testkit.UDPRoundTrip(c, dst, "x", 2*time.Second); err != nil {
		b.Fatal(err)
	}
	c.SetReadDeadline(time.Time{})
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.WriteTo(msg, to); err != nil {
			b.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, _, err := c.ReadFrom(buf); err != nil {
			b.Fatal(err)
		}
	}
}

// benchHarness is harnessLink, harnessSocket or harnessVhost for l.
func benchHarness(b testing.TB, l benchLink, pod nat.Pod) *memguest.Guest {
	var g *memguest.Guest
	switch {
	case l.socket:
		g, _ = harnessSocket(b, l.mtu, pod, nil)
	case l.vhost:
		g, _ = harnessVhost(b, l.mtu, pod, nil)
	default:
		g, _ = harnessLink(b, l.mtu, l.offload, pod, nil)
	}
	return g
}

// echoServer is a loopback TCP server that echoes every byte (tcprr's
// server: a 1-byte read, a 1-byte write).
func echoServer(b *testing.B) netip.AddrPort {
	return tcpServer(b, func(c net.Conn) {
		buf := make([]byte, 1)
		for {
			if _, err := io.ReadFull(c, buf); err != nil {
				return
			}
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	})
}

// BenchmarkTCPRR is tcprr's rr through the in-memory path: a 1-byte
// request and its 1-byte answer on one guest connection per op; ns/op is
// the round trip's latency.
func BenchmarkTCPRR(b *testing.B) {
	for _, l := range benchLinks[:3] {
		b.Run(l.name, func(b *testing.B) {
			pod := newFakePod()
			dst := netip.AddrPortFrom(world4, 7)
			pod.route(dst, echoServer(b))
			g := benchHarness(b, l, pod)
			c, err := dial(g, dst, 5*time.Second)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			buf := []byte{'r'}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkTCPCRR is tcprr's crr through the in-memory path: per op the
// guest connects, exchanges 1 byte and closes first.
func BenchmarkTCPCRR(b *testing.B) {
	for _, l := range benchLinks[:3] {
		b.Run(l.name, func(b *testing.B) {
			pod := newFakePod()
			dst := netip.AddrPortFrom(world4, 7)
			pod.route(dst, echoServer(b))
			g := benchHarness(b, l, pod)
			buf := []byte{'c'}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				c, err := dial(g, dst, 5*time.Second)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, buf); err != nil {
					b.Fatal(err)
				}
				c.Close()
			}
		})
	}
}
