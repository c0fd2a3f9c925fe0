package nat_test

import (
	"bytes"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/masqnet/masq/nat"
)

// Probes of the NAT's batched UDP sends (udpbatch.go) from the outside:
// what a guest sends on one socket must reach its destination as a plain
// per-datagram NAT would deliver it, whatever the batch holds meanwhile.

// TestUDPBatchEvictedFlowLosesNothing: a flow whose datagrams the batch
// holds is evicted to make room for a new flow (the table is full) in the
// same burst. Its datagrams were taken from the guest before the eviction,
// so they must still leave, as they did when every datagram was sent on
// arrival.
func TestUDPBatchEvictedFlowLosesNothing(t *testing.T) {
	pod := newFakePod()
	rcA, toA := udpReceiver(t)
	rcB, toB := udpReceiver(t)
	dstA, dstB := netip.AddrPortFrom(world4, 9), netip.AddrPortFrom(world4, 10)
	pod.route(dstA, toA)
	pod.route(dstB, toB)
	var endBurst func()
	g, n := harnessLink(t, 1500, true, pod, func(c *nat.Config) {
		c.BurstEnd = func(f func()) { endBurst = f }
		c.MaxUDPFlows = 1
	})
	a, b := guestUDP(t, g, guest4.Addr()), guestUDP(t, g, guest4.Addr())
	warmUp(t, a, dstA, rcA, endBurst)
	const held = 3
	for i := range held {
		if _, err := a.WriteTo(datagram(i, 1000), net.UDPAddrFromAddrPort(dstA)); err != nil {
			t.Fatal(err)
		}
	}
	waitFromGuest(t, n, 1+held)
	// b's first datagram opens a flow; the table (one flow) evicts a's.
	if _, err := b.WriteTo(datagram(99, 1000), net.UDPAddrFromAddrPort(dstB)); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); n.Stats().UDPEvicted == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("a's flow not evicted within 5s")
		}
	}
	endBurst()
	got := receive(t, rcB, 1, 5*time.Second)
	if !bytes.Equal(got[0], datagram(99, 1000)) {
		t.Fatal("b's datagram: wrong bytes")
	}
	buf := make([]byte, 2048)
	var arrived int
	for ; arrived < held; arrived++ {
		rcA.SetReadDeadline(time.Now().Add(time.Second))
		m, err := rcA.Read(buf)
		if err != nil {
			break
		}
		if !bytes.Equal(buf[:m], datagram(arrived, 1000)) {
			t.Fatalf("a's datagram %d: wrong bytes", arrived)
		}
	}
	if arrived != held {
		t.Errorf("%d of the %d datagrams the batch held for the evicted flow arrived (UDPSendFailed %d)",
			arrived, held, n.Stats().UDPSendFailed)
	}
}

// stallPod is a fakePod whose UDP sockets' sends, once stalled, block
// until the socket is closed or the test releases them: a kernel socket's
// send blocks so while its send buffer is full (a slow link, a shaping
// qdisc), and closing the socket ends it.
type stallPod struct {
	*fakePod
	stalled atomic.Bool
	entered chan struct{} // a send has blocked; buffered
	release chan struct{} // closed: blocked sends go on
}

func newStallPod() *stallPod {
	return &stallPod{fakePod: newFakePod(), entered: make(chan struct{}, 64), release: make(chan struct{})}
}

func (p *stallPod) ListenUDP(dst netip.Addr, port uint16) (nat.UDPConn, error) {
	c, err := p.fakePod.ListenUDP(dst, port)
	if err != nil {
		return nil, err
	}
	return &stallUDP{UDPConn: c, pod: p, closed: make(chan struct{})}, nil
}

// stallUDP is a fakeUDP whose sends stall as its pod says.
type stallUDP struct {
	nat.UDPConn // a *fakeUDP
	pod         *stallPod
	closeOnce   sync.Once
	closed      chan struct{}
}

var _ nat.GSOConn = (*stallUDP)(nil)

// wait blocks while the pod stalls sends, until c closes (net.ErrClosed)
// or the pod releases them.
func (c *stallUDP) wait() error {
	if !c.pod.stalled.Load() {
		return nil
	}
	select {
	case c.pod.entered <- struct{}{}:
	default:
	}
	select {
	case <-c.closed:
		return net.ErrClosed
	case <-c.pod.release:
		return nil
	}
}

func (c *stallUDP) WriteToUDPAddrPort(b []byte, dst netip.AddrPort) (int, error) {
	if err := c.wait(); err != nil {
		return 0, err
	}
	return c.UDPConn.WriteToUDPAddrPort(b, dst)
}

func (c *stallUDP) WriteToTTL(b []byte, dst netip.AddrPort, ttl uint8, df bool) (int, error) {
	if err := c.wait(); err != nil {
		return 0, err
	}
	return c.UDPConn.(nat.TTLConn).WriteToTTL(b, dst, ttl, df)
}

func (c *stallUDP) WriteGSO(b []byte, size int, dst netip.AddrPort, ttl uint8, df bool) error {
	if err := c.wait(); err != nil {
		return err
	}
	return c.UDPConn.(nat.GSOConn).WriteGSO(b, size, dst, ttl, df)
}

func (c *stallUDP) SyscallConn() (syscall.RawConn, error) {
	return c.UDPConn.(syscall.Conn).SyscallConn()
}

func (c *stallUDP) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return c.UDPConn.Close()
}

// TestUDPBatchShutdownWhileSendBlocked: the NAT closes while a send to
// the pod blocks (the pod socket's send buffer full). Closing the flows'
// sockets ends such a send, so Close must return at once, batched or not:
// the shutdown must not first wait for the blocked send (the batch's lock,
// held across it) before it closes the socket that would end it.
func TestUDPBatchShutdownWhileSendBlocked(t *testing.T) {
	for _, batched := range []bool{false, true} {
		t.Run(map[bool]string{false: "unbatched", true: "batched"}[batched], func(t *testing.T) {
			pod := newStallPod()
			rc, to := udpReceiver(t)
			dst := netip.AddrPortFrom(world4, 9)
			pod.route(dst, to)
			var endBurst func()
			g, n := harnessLink(t, 1500, true, pod, func(c *nat.Config) {
				c.BurstEnd = nil
				if batched {
					c.BurstEnd = func(f func()) { endBurst = f }
				}
			})
			t.Cleanup(func() { close(pod.release) }) // before the harness stops: whatever still blocks goes on
			c := guestUDP(t, g, guest4.Addr())
			warmUp(t, c, dst, rc, endBurst)
			pod.stalled.Store(true)
			for i := range 2 {
				if _, err := c.WriteTo(datagram(i, 1000), net.UDPAddrFromAddrPort(dst)); err != nil {
					t.Fatal(err)
				}
			}
			if batched {
				waitFromGuest(t, n, 3)
				go endBurst() // as the link's reader does; it blocks in the send
			}
			select {
			case <-pod.entered:
			case <-time.After(5 * time.Second):
				t.Fatal("no send blocked within 5s")
			}
			closed := make(chan struct{})
			go func() {
				n.Close()
				close(closed)
			}()
			select {
			case <-closed:
			case <-time.After(5 * time.Second):
				t.Fatal("NAT.Close did not return within 5s of a blocked send to the pod")
			}
		})
	}
}
