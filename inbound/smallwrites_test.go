package inbound_test

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

	"github.com/masqnet/masq/inbound"
	"github.com/masqnet/masq/internal/memguest"
	"github.com/masqnet/masq/internal/testkit"
	"github.com/masqnet/masq/ports"
)

// TestTCPSmallWrites moves 16 MiB that a client of a forwarded port
// writes 100 bytes at a time with TCP_NODELAY (an interactive protocol's
// writes, merged by gVisor into TSO segments of hundreds of views) to a
// server in the guest, over the plain link and over masq's vnet link, and
// checks that every byte arrived in order.
func TestTCPSmallWrites(t *testing.T) {
	const piece = 100
	size := 16 << 20
	if testing.Short() {
		size = 1 << 20
	}
	data := make([]byte, size)
	rand.Read(data)
	want := sha256.Sum256(data)
	for _, offload := range []bool{false, true} {
		t.Run(fmt.Sprintf("offload=%v", offload), func(t *testing.T) {
			guest, client := inboundPair(t, offload)
			client.(*net.TCPConn).SetNoDelay(true)
			deadline := time.Now().Add(60 * time.Second)
			client.SetDeadline(deadline)
			guest.SetDeadline(deadline)
			errc := make(chan error, 1)
			go func() {
				err := testkit.WriteInPieces(client, data, piece)
				client.(*net.TCPConn).CloseWrite()
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

// inboundPair connects a pod client through a forwarded port to a server
// in the guest and returns the guest's end and the client's.
func inboundPair(t *testing.T, offload bool) (guest, client net.Conn) {
	t.Helper()
	port := testkit.FreePort(t)
	set, err := ports.Parse(testkit.Itoa(port) + "/tcp")
	if err != nil {
		t.Fatal(err)
	}
	g, _ := harness(t, newFakePod(), offload, func(c *inbound.Config) { c.Ports = &set })
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
		if c, err := ln.Accept(); err == nil {
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
