package inbound_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"

	"github.com/masqnet/masq/internal/memguest"
	"github.com/masqnet/masq/internal/testkit"
)

// reuseConns is how many connections each case of TestInboundTCPPortReuse
// makes, from reusePorts ports: every port is reused five times.
const (
	reuseConns = 500
	reusePorts = 100
)

// stallBound is longer than any connect over the in-memory link takes,
// and shorter than the guest's first SYN retransmission (1 s): a connect
// beyond it is a SYN that was lost (issue #16's stall).
const stallBound = 900 * time.Millisecond

// TestInboundTCPPortReuse is TestTCPPortReuse inbound: pod clients on a
// few ports connect through a forwarded port, so masq dials the guest
// from the same gateway port again and again. Each client binds a fresh
// loopback address (all of them appear as the gateway), so the pod's
// kernel never reuses its own 4-tuple while masq's stack reuses one per
// port every time: the guest must see the client's own port and no
// connect may stall, whichever side closes first.
func TestInboundTCPPortReuse(t *testing.T) {
	tests := []struct {
		name        string
		clientFirst bool
	}{
		{"client closes first", true},
		{"guest closes first", false},
	}
	for c, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			port := testkit.FreePort(t)
			g, _ := inboundHarness(t, newFakePod(), testkit.Itoa(port)+"/tcp")
			guestServe(t, g, netip.AddrPortFrom(guest4.Addr(), port), tt.clientFirst)
			dst := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
			conns := reuseConns // each a pod socket; the kernel's TIME_WAITs add up
			var slowest time.Duration
			for i := range conns {
				// 127.c+1.0.2 and up, 100 ports each.
				from := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, byte(c + 1), byte(i / reusePorts / 250), byte(2 + i/reusePorts%250)}), 41000+uint16(i%reusePorts))
				took, seen, err := inboundRequest(from, dst, tt.clientFirst)
				if err != nil {
					t.Fatalf("connection %d from %s: %v", i, from, err)
				}
				if seen != netip.AddrPortFrom(gw4, from.Port()) {
					t.Fatalf("connection %d from %s: guest saw %s, want %s:%d", i, from, seen, gw4, from.Port())
				}
				slowest = max(slowest, took)
				if took > stallBound {
					t.Fatalf("connection %d from %s took %v: a stalled dial into the guest", i, from, took)
				}
			}
			t.Logf("%d connections from %d gateway ports, slowest %v", conns, reusePorts, slowest)
		})
	}
}

// guestServe answers each connection to the guest's local address with
// the client address it saw and closes, after the client's FIN if
// clientFirst. It stops at the end of the test.
func guestServe(t *testing.T, g *memguest.Guest, local netip.AddrPort, clientFirst bool) {
	t.Helper()
	ln, err := gonet.ListenTCP(g.Stack, memguest.FullAddress(local), ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				io.WriteString(c, c.RemoteAddr().String()+"\n")
				if clientFirst {
					io.Copy(io.Discard, c)
				}
			})
		}
	})
}

// inboundRequest connects from from to dst, reads the client address the
// guest saw, and closes, first or after the guest's FIN. It returns how
// long until the guest's answer arrived: the connect into the guest is
// made only once the pod has accepted.
func inboundRequest(from, dst netip.AddrPort, clientFirst bool) (time.Duration, netip.AddrPort, error) {
	start := time.Now()
	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(from), Timeout: 5 * time.Second,
		// A run of the test a moment ago left this address in TIME_WAIT
		// toward another port.
		Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
			})
			return errors.Join(err, serr)
		}}
	c, err := d.Dial("tcp4", dst.String())
	if err != nil {
		return 0, netip.AddrPort{}, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	took := time.Since(start)
	if err != nil {
		return took, netip.AddrPort{}, fmt.Errorf("guest's answer: %w", err)
	}
	seen, err := netip.ParseAddrPort(strings.TrimSpace(line))
	if err != nil {
		return took, netip.AddrPort{}, err
	}
	if !clientFirst {
		if n, err := c.Read(make([]byte, 1)); err != io.EOF {
			return took, seen, fmt.Errorf("read %d bytes, %v; want the guest's EOF", n, err)
		}
	}
	return took, seen, nil
}
