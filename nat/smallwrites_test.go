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

	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"

	"github.com/masqnet/masq/internal/memguest"
	"github.com/masqnet/masq/nat"
	"github.com/masqnet/masq/ports"
)

// smallWriteSize is the write size of the small-writes tests: an
// interactive protocol's (SSH, a database, RPC). gVisor merges such writes
// into TSO segments of hundreds of views, which a link must write whole.
const smallWriteSize = 100

// writeSmall writes data to c in pieces of size bytes.
func writeSmall(c net.Conn, data []byte, size int) error {
	for len(data) > 0 {
		k := min(size, len(data))
		if _, err := c.Write(data[:k]); err != nil {
			return err
		}
		data = data[k:]
	}
	return nil
}

// smallWriteEnds are the two ends of one small-writes transfer: the writer
// writes smallWriteSize bytes at a time, the reader hashes all it reads.
type smallWriteEnds struct {
	writer, reader net.Conn
}

// TestTCPSmallWrites moves 16 MiB written 100 bytes at a time each way,
// outbound (a guest connection to the world) and inbound (a client of a
// forwarded port), over the plain link and over masq's vnet link, and
// checks that every byte arrived in order.
func TestTCPSmallWrites(t *testing.T) {
	size := 16 << 20
	if testing.Short() {
		size = 1 << 20
	}
	data := make([]byte, size)
	rand.Read(data)
	want := sha256.Sum256(data)
	for _, offload := range []bool{false, true} {
		// Toward the guest only: the guest here is a gVisor stack, which
		// sends each small write as its own segment (a Linux guest corks
		// them), and gVisor's receiver drops segments once their
		// per-segment overhead fills its buffer, recovering by timeouts;
		// e2e moves small writes from a real guest kernel both ways.
		for _, dir := range []string{"outbound pod writes", "inbound client writes"} {
			t.Run(fmt.Sprintf("%s offload=%v", dir, offload), func(t *testing.T) {
				guest, writer := outboundPair(t, offload)
				if dir == "inbound client writes" {
					guest, writer = inboundPair(t, offload)
				}
				ends := smallWriteEnds{writer: writer, reader: guest}
				if tc, ok := ends.writer.(*net.TCPConn); ok {
					tc.SetNoDelay(true)
				}
				deadline := time.Now().Add(60 * time.Second)
				ends.writer.SetDeadline(deadline)
				ends.reader.SetDeadline(deadline)
				errc := make(chan error, 1)
				go func() {
					err := writeSmall(ends.writer, data, smallWriteSize)
					ends.writer.(interface{ CloseWrite() error }).CloseWrite()
					errc <- err
				}()
				h := sha256.New()
				n, err := io.Copy(h, ends.reader)
				if werr := <-errc; werr != nil {
					t.Fatalf("write: %v", werr)
				}
				if err != nil || n != int64(size) || [32]byte(h.Sum(nil)) != want {
					t.Fatalf("read %d of %d bytes (err %v), same sha256: %v", n, size, err, [32]byte(h.Sum(nil)) == want)
				}
			})
		}
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

// inboundPair connects a pod client through a forwarded port to a server
// in the guest and returns the guest's end and the client's.
func inboundPair(t *testing.T, offload bool) (guest, client net.Conn) {
	t.Helper()
	port := freePort(t)
	set, err := ports.Parse(itoa(port) + "/tcp")
	if err != nil {
		t.Fatal(err)
	}
	g, _ := harnessLink(t, 1500, offload, newFakePod(), func(c *nat.Config) {
		c.Inbound, c.InboundPorts = true, &set
	})
	ln, err := gonet.ListenTCP(g.Stack, memguest.FullAddress(netip.AddrPortFrom(guest4.Addr(), port)), ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	client, err = net.DialTimeout("tcp4", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port).String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	select {
	case guest = <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("the guest accepted nothing")
	}
	t.Cleanup(func() { guest.Close() })
	return guest, client
}
