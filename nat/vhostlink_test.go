package nat_test

import (
	"io"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/masqnet/masq/internal/memguest"
	"github.com/masqnet/masq/internal/vhostguest"
	"github.com/masqnet/masq/link/vhostuser"
	"github.com/masqnet/masq/nat"
)

// harnessVhost is harnessMTU over masq's vhost-user link, the guest's
// driver and its QEMU played by internal/vhostguest.
func harnessVhost(t testing.TB, mtu uint32, pod nat.Pod, mod func(*nat.Config)) (*memguest.Guest, *nat.NAT) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "vhost.sock")
	e, err := vhostuser.Listen(vhostuser.Config{Path: path, MTU: mtu, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	// Serve the front-end before the stack exists (its NIC takes over the
	// dispatcher): the session is set up in this goroutine.
	e.Attach(dropDispatcher{})
	f := vhostguest.Dial(t, path, vhostguest.Options{})
	d := vhostguest.NewDriver(t, f, mtu)
	return harnessOn(t, d.Guest, e, mtu, pod, mod, e.Close)
}

// dropDispatcher drops what it is handed.
type dropDispatcher struct{}

func (dropDispatcher) DeliverNetworkPacket(tcpip.NetworkProtocolNumber, *gstack.PacketBuffer) {}
func (dropDispatcher) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *gstack.PacketBuffer)    {}

func TestVhostUserLinkTCP(t *testing.T) {
	pod := newFakePod()
	dst := netip.AddrPortFrom(world4, 7)
	pod.route(dst, tcpServer(t, func(c net.Conn) { io.Copy(c, c) }))
	g, _ := harnessVhost(t, 1500, pod, nil)
	c, err := dial(g, dst, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := make([]byte, 200000)
	go c.Write(msg)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, msg); err != nil {
		t.Fatalf("echo: %v", err)
	}
}
