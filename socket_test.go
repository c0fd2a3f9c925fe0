package masq_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"

	"github.com/masqnet/masq"
	"github.com/masqnet/masq/internal/memguest"
	"github.com/masqnet/masq/link"
)

// startSocketGuest runs masq.Run with --socket and connects an in-memory
// guest (10.0.2.2, statically: no DHCP) to it, as QEMU would.
func startSocketGuest(t *testing.T, mtu uint32) *memguest.Guest {
	t.Helper()
	path := filepath.Join(t.TempDir(), "vm.sock")
	startMasqNoGuest(t, mtu, func(c *masq.Config) {
		c.Socket = link.SocketAddr{Path: path}
		c.AllowGatewayToPod = true // the pod is this machine's loopback
	})
	var conn net.Conn
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if conn, err = net.Dial("unix", path); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("masq never listened on %s: %v", path, err)
	}
	g := memguest.NewStream(t, mtu, conn)
	g.AddAddress(t, netip.MustParsePrefix("10.0.2.2/24"))
	g.UseGateways(netip.MustParseAddr("10.0.2.1"))
	return g
}

func TestSocketLinkTCPEcho16MiB(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
	}()
	g := startSocketGuest(t, 1500)
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := gonet.DialContextTCP(ctx, g.Stack, memguest.FullAddress(netip.AddrPortFrom(netip.MustParseAddr("10.0.2.1"), port)), ipv4.ProtocolNumber)
	if err != nil {
		t.Fatalf("dial the pod's loopback through the gateway: %v", err)
	}
	defer c.Close()
	data := make([]byte, 16<<20)
	rand.Read(data)
	go func() {
		c.Write(data)
		c.CloseWrite()
	}()
	h := sha256.New()
	c.SetReadDeadline(time.Now().Add(60 * time.Second))
	n, err := io.Copy(h, c)
	if err != nil || n != int64(len(data)) {
		t.Fatalf("echoed %d bytes, %v; want %d", n, err, len(data))
	}
	if want := sha256.Sum256(data); string(h.Sum(nil)) != string(want[:]) {
		t.Fatal("echoed data differs")
	}
}
