package nat_test

import (
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/masqnet/masq/internal/memguest"
	"github.com/masqnet/masq/link"
	"github.com/masqnet/masq/nat"
)

// harnessSocket is harnessMTU over masq's --socket link: the guest
// speaks QEMU's stream netdev protocol on a unix socket.
func harnessSocket(t testing.TB, mtu uint32, pod nat.Pod, mod func(*nat.Config)) (*memguest.Guest, *nat.NAT) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "vm.sock")
	s, err := link.ListenSocket(link.SocketConfig{Addr: link.SocketAddr{Path: path}, MTU: mtu, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("unix", path)
	if err != nil {
		s.Close()
		t.Fatal(err)
	}
	g := memguest.NewStream(t, mtu, conn)
	return harnessOn(t, g, s, mtu, pod, mod, s.Close)
}

func TestSocketLinkTCP(t *testing.T) {
	pod := newFakePod()
	dst := netip.AddrPortFrom(world4, 7)
	pod.route(dst, tcpServer(t, func(c net.Conn) { buf := make([]byte, 5); c.Read(buf); c.Write(buf) }))
	g, _ := harnessSocket(t, 1500, pod, nil)
	c, err := dial(g, dst, 5e9)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("hello"))
	buf := make([]byte, 5)
	if _, err := c.Read(buf); err != nil || string(buf) != "hello" {
		t.Fatalf("echo = %q, %v", buf, err)
	}
}
