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

	"github.com/insomniacslk/dhcp/dhcpv4"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"

	"github.com/masqnet/masq"
	"github.com/masqnet/masq/internal/memguest"
	"github.com/masqnet/masq/internal/vhostguest"
)

// startVhostUser runs masq.Run with --vhost-user and returns the socket's
// path; vhostGuest connects a guest.
func startVhostUser(t *testing.T, mtu uint32) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "vhost.sock")
	startMasqNoGuest(t, mtu, func(c *masq.Config) {
		c.VhostUser = path
		c.AllowGatewayToPod = true // the pod is this machine's loopback
	})
	return path
}

// vhostGuest plays QEMU and the guest's driver on path, with an
// in-memory guest stack on the rings.
func vhostGuest(t *testing.T, path string, mtu uint32) (*vhostguest.Frontend, *vhostguest.Driver) {
	t.Helper()
	f := vhostguest.Dial(t, path, vhostguest.Options{})
	return f, vhostguest.NewDriver(t, f, mtu)
}

func TestVhostUserDHCPLease(t *testing.T) {
	path := startVhostUser(t, 9000)
	_, d := vhostGuest(t, path, 9000)
	g := d.Guest
	g.AddAddress(t, netip.MustParsePrefix("0.0.0.0/0"))
	c := dhcpConn(t, g, netip.IPv4Unspecified())
	disc, err := dhcpv4.NewDiscovery(net.HardwareAddr(memguest.MAC), dhcpv4.WithRequestedOptions(dhcpv4.OptionInterfaceMTU))
	if err != nil {
		t.Fatal(err)
	}
	bcast := netip.MustParseAddrPort("255.255.255.255:67")
	offer := exchange(t, c, bcast, disc)
	checkLease(t, offer, dhcpv4.MessageTypeOffer)
	req, err := dhcpv4.NewRequestFromOffer(offer)
	if err != nil {
		t.Fatal(err)
	}
	checkLease(t, exchange(t, c, bcast, req), dhcpv4.MessageTypeAck)
}

// echoEveryConn listens on the pod's loopback and echoes every connection.
func echoEveryConn(t *testing.T) uint16 {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

// addGuestStatic gives the guest 10.0.2.2/24 and its default route via
// the gateway, without DHCP.
func addGuestStatic(t *testing.T, g *memguest.Guest) {
	t.Helper()
	g.AddAddress(t, netip.MustParsePrefix("10.0.2.2/24"))
	g.UseGateways(netip.MustParseAddr("10.0.2.1"))
}

// echo16MiB sends 16 MiB of random bytes from the guest to the pod's echo
// server and checks what comes back by sha256.
func echo16MiB(t *testing.T, g *memguest.Guest, port uint16) {
	t.Helper()
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
	c.SetReadDeadline(time.Now().Add(90 * time.Second))
	n, err := io.Copy(h, c)
	if err != nil || n != int64(len(data)) {
		t.Fatalf("echoed %d bytes, %v; want %d", n, err, len(data))
	}
	if want := sha256.Sum256(data); string(h.Sum(nil)) != string(want[:]) {
		t.Fatal("echoed data differs")
	}
}

func TestVhostUserTCPEcho16MiBWithTSO(t *testing.T) {
	port := echoEveryConn(t)
	path := startVhostUser(t, 1500)
	_, d := vhostGuest(t, path, 1500)
	addGuestStatic(t, d.Guest)
	echo16MiB(t, d.Guest, port)
	s := d.Stats()
	t.Logf("driver: %+v", s)
	if s.TSOFromGuest == 0 || s.TSOToGuest == 0 {
		t.Errorf("TSO segments from the guest %d, to it %d: want both > 0", s.TSOFromGuest, s.TSOToGuest)
	}
	if s.MergedToGuest == 0 {
		t.Errorf("no frame to the guest spanned several receive buffers (MRG_RXBUF)")
	}
}

// TestVhostUserReconnect: QEMU goes away (its connection ends) and a new
// one, with fresh guest memory and rings, is served as the first was.
func TestVhostUserReconnect(t *testing.T) {
	port := echoEveryConn(t)
	path := startVhostUser(t, 1500)
	f1, d1 := vhostGuest(t, path, 1500)
	_ = d1
	f1.Close()
	_, d2 := vhostGuest(t, path, 1500)
	addGuestStatic(t, d2.Guest)
	echo16MiB(t, d2.Guest, port)
}
