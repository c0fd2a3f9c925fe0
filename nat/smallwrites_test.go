package nat_test

import (
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/masqnet/masq/internal/testkit"
)

// smallWriteSize is the write size of the small-writes test: an
// interactive protocol's (SSH, a database, RPC). gVisor merges such writes
// into TSO segments of hundreds of views, which a link must write whole.
const smallWriteSize = 100

// TestTCPSmallWrites moves 16 MiB written 100 bytes at a time with
// TCP_NODELAY from a world server to the guest, over the plain link and
// over masq's vnet link, and checks that every byte arrived in order.
// (Toward the guest only: the guest here is a gVisor stack, which sends
// each small write as its own segment where a Linux guest corks them, and
// gVisor's receiver drops segments once their per-segment overhead fills
// its buffer, recovering by timeouts; e2e's TestSmallWrites moves small
// writes from a real guest kernel both ways. Package inbound's test does
// the forwarded-port direction.)
func TestTCPSmallWrites(t *testing.T) {
	size := 16 << 20
	if testing.Short() {
		size = 1 << 20
	}
	data := make([]byte, size)
	rand.Read(data)
	want := sha256.Sum256(data)
	for _, offload := range []bool{false, true} {
		t.Run(fmt.Sprintf("offload=%v", offload), func(t *testing.T) {
			guest, pod := outboundPair(t, offload)
			pod.(*net.TCPConn).SetNoDelay(true)
			deadline := time.Now().Add(60 * time.Second)
			pod.SetDeadline(deadline)
			guest.SetDeadline(deadline)
			errc := make(chan error, 1)
			go func() {
				err := testkit.WriteInPieces(pod, data, smallWriteSize)
				pod.(*net.TCPConn).CloseWrite()
				errc <- err
			}()
			h := sha256.New()
			n, err := io.Copy(h, guest)
			if werr := <-errc; werr != nil {
				t.Fatalf("write: %v", werr)
			}
			if err != nil || n != int64(size) || [32]byte(h.Sum(nil)) != want {
				t.Fatalf("read %d of %d bytes (err %v), same sha256: %v", n, size, err, [32]byte(h.Sum(nil)) == want)
			}
		})
	}
}

// outboundPair connects the guest to a world server through masq and
// returns the guest's end and the server's.
func outboundPair(t *testing.T, offload bool) (guest, pod net.Conn) {
	t.Helper()
	accepted := make(chan net.Conn, 1)
	done := make(chan struct{})
	p := newFakePod()
	p.route(netip.AddrPortFrom(world4, 7), tcpServer(t, func(c net.Conn) {
		accepted <- c
		<-done // tcpServer closes c when the handler returns
	}))
	t.Cleanup(func() { close(done) }) // before tcpServer's, which waits for the handler
	g, _ := harnessLink(t, 1500, offload, p, nil)
	c, err := dial(g, netip.AddrPortFrom(world4, 7), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	select {
	case pod = <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("the world server accepted nothing")
	}
	return c, pod
}
