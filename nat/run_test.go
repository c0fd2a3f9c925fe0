package nat_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/masqnet/masq/internal/memguest"
	"github.com/masqnet/masq/internal/testkit"
	"github.com/masqnet/masq/link"
	"github.com/masqnet/masq/nat"
	"github.com/masqnet/masq/stack"
)

// openFDs lists the test process's open file descriptors: number and
// what each is.
func openFDs(t *testing.T) map[string]string {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	fds := map[string]string{}
	for _, e := range entries {
		target, _ := os.Readlink("/proc/self/fd/" + e.Name())
		fds[e.Name()] = target
	}
	return fds
}

// TestRunLeavesNothing runs a NAT with TCP and UDP flows open through
// kernel sockets, ends Run's context and checks that Run returns nil, and
// that once the stack and the guest are gone no goroutine and no file
// descriptor is left.
func TestRunLeavesNothing(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Run("serve", func(t *testing.T) {
		pod := newFakePod()
		tcpDst, udpDst := netip.AddrPortFrom(world4, 7), netip.AddrPortFrom(world4, 9)
		// An echo that copies through a buffer: io.Copy between two TCP
		// sockets would splice through a pipe Go caches past the test.
		pod.route(tcpDst, tcpServer(t, func(c net.Conn) { io.CopyBuffer(struct{ io.Writer }{c}, struct{ io.Reader }{c}, make([]byte, 512)) }))
		pod.route(udpDst, testkit.UDPEcho(t))
		g, fd := memguest.New(t, 1500)
		defer unix.Close(fd)
		ep, err := link.NewFD(fd, 1500, nil)
		if err != nil {
			t.Fatal(err)
		}
		st, err := stack.New(ep, stack.Config{MTU: 1500, IPv4: netip.PrefixFrom(gw4, 24), IPv6: netip.PrefixFrom(gw6, 120)})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		n, err := nat.New(st, nat.Config{Policy: policy(), Pod: pod})
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Start(); err != nil {
			t.Fatal(err)
		}
		// The guest's link and stack hold descriptors of their own until
		// they are closed: count from here, with them set up.
		before := openFDs(t)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		errc := make(chan error, 1)
		go func() { errc <- n.Run(ctx) }()
		g.AddAddress(t, guest4)
		g.UseGateways(gw4, gw6)

		c, err := dial(g, tcpDst, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatalf("TCP echo: %v", err)
		}
		u := guestUDP(t, g, guest4.Addr())
		u.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := u.WriteTo([]byte("ping"), net.UDPAddrFromAddrPort(udpDst)); err != nil {
			t.Fatal(err)
		}
		if _, _, err := u.ReadFrom(buf); err != nil {
			t.Fatalf("UDP echo: %v", err)
		}
		if s := n.Stats(); s.TCPOpened != 1 || s.UDPOpened != 1 {
			t.Fatalf("flows opened: tcp %d, udp %d; want 1 and 1", s.TCPOpened, s.UDPOpened)
		}

		cancel()
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("Run: %v, want nil after its context ended", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return within 10s of its context's end")
		}
		// A second Run is refused, not served.
		if err := n.Run(context.Background()); err == nil {
			t.Error("second Run returned nil")
		}
		c.Close()
		u.Close()
		// The test's servers close their ends when they see masq's.
		deadline := time.Now().Add(5 * time.Second)
		for len(openFDs(t)) != len(before) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if after := openFDs(t); len(after) != len(before) {
			t.Errorf("file descriptors: %d open before Run, %d after it returned:\nbefore %v\nafter  %v",
				len(before), len(after), before, after)
		}
	})
	// The subtest's cleanups have closed the guest, the servers and the
	// stack: a goroutine left is one Run left.
	if err := goleak.Find(ignore); err != nil {
		t.Errorf("goroutines left after Run: %v", err)
	}
}

// TestRunAfterClose checks that a NAT closed before it ran reports it.
func TestRunAfterClose(t *testing.T) {
	st := newStack(t)
	n2, err := nat.New(st, nat.Config{Policy: policy(), Pod: newFakePod()})
	if err != nil {
		t.Fatal(err)
	}
	n2.Close()
	if err := n2.Run(context.Background()); !errors.Is(err, nat.ErrClosed) {
		t.Errorf("Run after Close: %v, want nat.ErrClosed", err)
	}
}

// newStack is a stack on a guest link nobody serves, closed at the end
// of the test.
func newStack(t *testing.T) *stack.Stack {
	t.Helper()
	_, fd := memguest.New(t, 1500)
	ep, err := link.NewFD(fd, 1500, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := stack.New(ep, stack.Config{MTU: 1500, IPv4: netip.PrefixFrom(gw4, 24)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close(); unix.Close(fd) })
	return st
}
