package masq_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"

	"github.com/masqnet/masq"
	"github.com/masqnet/masq/capture"
	"github.com/masqnet/masq/internal/memguest"
	"github.com/masqnet/masq/internal/testkit"
	"github.com/masqnet/masq/stack"
)

// leaseAndEcho has the guest take its lease by DHCP and then echo data
// through a TCP connection to the pod's loopback at the gateway's port.
func leaseAndEcho(t *testing.T, g *memguest.Guest, port uint16, data []byte) {
	t.Helper()
	g.AddAddress(t, netip.MustParsePrefix("0.0.0.0/0"))
	c := dhcpConn(t, g, netip.IPv4Unspecified())
	disc, err := dhcpv4.NewDiscovery(net.HardwareAddr(memguest.MAC))
	if err != nil {
		t.Fatal(err)
	}
	bcast := netip.MustParseAddrPort("255.255.255.255:67")
	req, err := dhcpv4.NewRequestFromOffer(exchange(t, c, bcast, disc))
	if err != nil {
		t.Fatal(err)
	}
	if ack := exchange(t, c, bcast, req); ack.MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("DHCP answered the request with %s", ack.MessageType())
	}
	c.Close()
	g.RemoveAddress(t, netip.IPv4Unspecified())
	g.AddAddress(t, netip.MustParsePrefix("10.0.2.2/24"))
	g.UseGateways(netip.MustParseAddr("10.0.2.1"))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := gonet.DialContextTCP(ctx, g.Stack, memguest.FullAddress(netip.AddrPortFrom(netip.MustParseAddr("10.0.2.1"), port)), ipv4.ProtocolNumber)
	if err != nil {
		t.Fatalf("dial the pod's loopback through the gateway: %v", err)
	}
	defer conn.Close()
	go func() {
		conn.Write(data)
		conn.CloseWrite()
	}()
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	got, err := io.ReadAll(conn)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("echoed %d bytes, %v; want the %d sent", len(got), err, len(data))
	}
}

// readCapture parses the pcap file at path, failing t unless it is whole.
func readCapture(t *testing.T, path string) []testkit.PCAPRecord {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	snaplen, recs, err := testkit.ParsePCAP(b)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if snaplen != capture.Snaplen {
		t.Errorf("snaplen %d, want %d", snaplen, capture.Snaplen)
	}
	return recs
}

// TestPCAPRecordsDHCPAndTCP: --pcap holds, once masq has stopped, the
// guest's DHCP exchange and its TCP handshake, each frame in the
// direction it went.
func TestPCAPRecordsDHCPAndTCP(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vm.pcap")
	port := echoEveryConn(t)
	t.Run("traffic", func(t *testing.T) { // masq stops when it ends
		g := startMasq(t, 1500, func(c *masq.Config) {
			c.PCAP = path
			c.AllowGatewayToPod = true
		})
		leaseAndEcho(t, g, port, []byte("hello through masq"))
	})
	var dhcp []string // message types in order
	var tcp []string  // the first flags of the connection, in order
	guest, gw := tcpip.LinkAddress(memguest.MAC), stack.GatewayMAC
	for _, r := range readCapture(t, path) {
		eth := header.Ethernet(r.Frame)
		fromGuest := eth.SourceAddress() == guest
		if !fromGuest && eth.SourceAddress() != gw {
			t.Errorf("frame from %s: neither the guest nor the gateway", eth.SourceAddress())
		}
		if eth.Type() != header.IPv4ProtocolNumber {
			continue
		}
		ip := header.IPv4(r.Frame[header.EthernetMinimumSize:])
		switch ip.TransportProtocol() {
		case header.UDPProtocolNumber:
			udp := header.UDP(ip.Payload())
			if m, err := dhcpv4.FromBytes(udp.Payload()); err == nil && (udp.DestinationPort() == 67 || udp.DestinationPort() == 68) {
				// A client's retransmission (a DISCOVER repeated before the
				// OFFER on a busy machine) is the same step of the exchange.
				if msg := dir(fromGuest) + m.MessageType().String(); len(dhcp) == 0 || dhcp[len(dhcp)-1] != msg {
					dhcp = append(dhcp, msg)
				}
			}
		case header.TCPProtocolNumber:
			if th := header.TCP(ip.Payload()); th.SourcePort() == port || th.DestinationPort() == port {
				tcp = append(tcp, dir(fromGuest)+flags(th.Flags()))
			}
		}
	}
	if want := []string{"> DISCOVER", "< OFFER", "> REQUEST", "< ACK"}; strings.Join(dhcp, ",") != strings.Join(want, ",") {
		t.Errorf("DHCP in the capture: %q, want %q", dhcp, want)
	}
	want := []string{"> S", "< SA", "> A"}
	if len(tcp) < len(want) || strings.Join(tcp[:3], ",") != strings.Join(want, ",") {
		t.Errorf("TCP in the capture: %q, want a handshake %q first", tcp, want)
	}
}

// dir marks a frame's direction: > from the guest, < to it.
func dir(fromGuest bool) string {
	if fromGuest {
		return "> "
	}
	return "< "
}

// flags spells the TCP flags a handshake has: S, A, F, R.
func flags(f header.TCPFlags) string {
	var s string
	for _, x := range []struct {
		flag header.TCPFlags
		name string
	}{{header.TCPFlagSyn, "S"}, {header.TCPFlagAck, "A"}, {header.TCPFlagFin, "F"}, {header.TCPFlagRst, "R"}} {
		if f.Contains(x.flag) {
			s += x.name
		}
	}
	return s
}

// syncBuffer is a bytes.Buffer safe for concurrent writes (masq's log).
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestPCAPSizeCap: a transfer far beyond --pcap-max-bytes passes whole;
// the file stops short of the cap, whole records only, with one log line.
func TestPCAPSizeCap(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vm.pcap")
	port := echoEveryConn(t)
	var logs syncBuffer
	const max = 64 << 10
	t.Run("traffic", func(t *testing.T) {
		g := startMasq(t, 1500, func(c *masq.Config) {
			c.PCAP, c.PCAPMaxBytes = path, max
			c.AllowGatewayToPod = true
			c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		})
		data := make([]byte, 4<<20)
		rand.Read(data)
		leaseAndEcho(t, g, port, data)
	})
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > max || fi.Size() < max-capture.RecordHeaderLen-1514 {
		t.Errorf("capture is %d bytes, want just under the cap of %d", fi.Size(), max)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("capture file mode %v, want 0600", fi.Mode().Perm())
	}
	readCapture(t, path)
	if n := strings.Count(logs.String(), "size cap reached"); n != 1 {
		t.Errorf("%d log lines about the cap, want 1:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "capped=true") {
		t.Errorf("no stop line saying the capture was capped:\n%s", logs.String())
	}
}

func TestPCAPMaxBytesValidation(t *testing.T) {
	for max, ok := range map[int64]bool{0: true, capture.MinMaxBytes: true, 1 << 40: true, 100: false, -1: false} {
		cfg := masq.DefaultConfig()
		cfg.PCAPMaxBytes = max
		err := cfg.Validate()
		if (err == nil) != ok || err != nil && !strings.Contains(err.Error(), "--pcap-max-bytes") {
			t.Errorf("PCAPMaxBytes %d: Validate() = %v, want ok %v or an error naming --pcap-max-bytes", max, err, ok)
		}
	}
}
