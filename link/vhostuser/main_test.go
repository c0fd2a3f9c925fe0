package vhostuser

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// TestMain fails the run if any test leaves a goroutine behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// gatewayMAC is masq's side's link address in these tests.
const gatewayMAC = tcpip.LinkAddress("\x02\x00\x00\x00\x00\x01")

// countingDispatcher counts the frames delivered to it.
type countingDispatcher struct{ n atomic.Int64 }

func (c *countingDispatcher) DeliverNetworkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {
	c.n.Add(1)
}

func (c *countingDispatcher) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {}

// listen returns an attached Endpoint on a fresh socket path, closed when
// the test ends, and what it delivers to.
func listen(t testing.TB) (*Endpoint, *countingDispatcher, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "vhost.sock")
	e, err := Listen(Config{Path: path, MTU: 1500, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	e.SetLinkAddress(gatewayMAC)
	d := new(countingDispatcher)
	e.Attach(d)
	t.Cleanup(e.Close)
	return e, d, path
}

// waitFor polls cond for up to 5 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// fdFile wraps fd as an *os.File (taking ownership of it).
func fdFile(fd int) *os.File { return os.NewFile(uintptr(fd), "fuzz") }
