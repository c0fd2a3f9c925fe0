package masq_test

import (
	"net"
	"path/filepath"
	"testing"
	"time"

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
	addGuestStatic(t, g)
	return g
}

func TestSocketLinkTCPEcho16MiB(t *testing.T) {
	port := echoEveryConn(t)
	echo16MiB(t, startSocketGuest(t, 1500), port)
}
