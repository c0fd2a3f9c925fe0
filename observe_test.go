package masq_test

import (
	"context"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"

	"github.com/masqnet/masq"
	"github.com/masqnet/masq/control"
	"github.com/masqnet/masq/flowtable"
	"github.com/masqnet/masq/inbound"
	"github.com/masqnet/masq/internal/memguest"
	"github.com/masqnet/masq/internal/testkit"
	"github.com/masqnet/masq/link"
	"github.com/masqnet/masq/nat"
	"github.com/masqnet/masq/ports"
)

// routedPod is the pod for tests of Run: world addresses in routes reach
// loopback servers; anything else is unreachable. It opens no port.
type routedPod struct {
	nat.KernelPod
	routes map[netip.AddrPort]netip.AddrPort
}

func (p routedPod) target(dst netip.AddrPort) (netip.AddrPort, error) {
	if to, ok := p.routes[dst]; ok {
		return to, nil
	}
	return dst, &net.OpError{Op: "dial", Net: "ip", Err: os.ErrNotExist}
}

func (p routedPod) DialTCP(ctx context.Context, dst netip.AddrPort) (net.Conn, error) {
	to, err := p.target(dst)
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", to.String())
}

func (p routedPod) ListenUDP(dst netip.Addr, port uint16) (nat.UDPConn, error) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	return &routedUDP{UDPConn: c, pod: p}, nil
}

func (routedPod) Listen(proto ports.Protocol, fam inbound.Family, port uint16) (*inbound.Socket, error) {
	return inbound.KernelPod{}.Listen(proto, fam, port)
}

func (routedPod) EphemeralPorts() (first, last uint16, err error) {
	return inbound.KernelPod{}.EphemeralPorts()
}

// routedUDP sends through the pod's routes and maps replies back.
type routedUDP struct {
	*net.UDPConn
	pod routedPod
	mu  sync.Mutex
	rev map[netip.AddrPort]netip.AddrPort
}

func (c *routedUDP) WriteToUDPAddrPort(b []byte, dst netip.AddrPort) (int, error) {
	to, err := c.pod.target(dst)
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	if c.rev == nil {
		c.rev = map[netip.AddrPort]netip.AddrPort{}
	}
	c.rev[to] = dst
	c.mu.Unlock()
	return c.UDPConn.WriteToUDPAddrPort(b, to)
}

func (c *routedUDP) ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error) {
	n, from, err := c.UDPConn.ReadFromUDPAddrPort(b)
	c.mu.Lock()
	if orig, ok := c.rev[netip.AddrPortFrom(from.Addr().Unmap(), from.Port())]; ok {
		from = orig
	}
	c.mu.Unlock()
	return n, from, err
}

// Traffic of the observability test: what the guest sends and is sent.
const (
	tcpUp, tcpDown = 3000, 70000
	udpSize        = 100
)

// tcpPeer serves one connection: reads tcpUp bytes, writes tcpDown, then
// waits for the guest's FIN.
func tcpPeer(t *testing.T) netip.AddrPort {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.CopyN(io.Discard, c, tcpUp)
		c.Write(make([]byte, tcpDown))
		io.Copy(io.Discard, c)
	}()
	return netip.MustParseAddrPort(ln.Addr().String())
}

// TestControlFlowsAndMetrics runs masq with --control against an
// in-memory guest, carries a known TCP and UDP exchange, and reads the
// flows and metrics back from the control socket.
func TestControlFlowsAndMetrics(t *testing.T) {
	tcpDst, udpDst := netip.MustParseAddrPort("198.18.0.1:80"), netip.MustParseAddrPort("198.18.0.2:7")
	tcpTo, udpTo := tcpPeer(t), testkit.UDPEcho(t)
	sock := filepath.Join(t.TempDir(), "control.sock")
	g := startMasq(t, 1500, func(c *masq.Config) {
		c.Control = sock
		c.Version = "test"
		c.Pod = routedPod{routes: map[netip.AddrPort]netip.AddrPort{tcpDst: tcpTo, udpDst: udpTo}}
	})
	g.AddAddress(t, netip.MustParsePrefix("10.0.2.2/24"))
	g.UseGateways(netip.MustParseAddr("10.0.2.1"))
	cl := control.NewClient(sock)
	defer cl.Close()
	ctx := context.Background()
	waitReady(t, cl)
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("control socket mode %v, want 0600", fi.Mode().Perm())
	}

	tc := guestTCP(t, g, tcpDst)
	uc := guestUDPExchange(t, g, udpDst)

	tcpFlow := oneFlow(t, cl, "tcp")
	guestTCPAddr := netip.MustParseAddrPort(tc.LocalAddr().String())
	if tcpFlow.Guest != guestTCPAddr || tcpFlow.Remote != tcpDst || tcpFlow.Direction != flowtable.Outbound ||
		!tcpFlow.Local.Addr().IsLoopback() || tcpFlow.State != "established" {
		t.Errorf("tcp flow %+v, want %s -> %s, established, local on loopback", tcpFlow, guestTCPAddr, tcpDst)
	}
	if tcpFlow.BytesFromGuest != tcpUp || tcpFlow.BytesToGuest != tcpDown || tcpFlow.PacketsFromGuest == 0 || tcpFlow.PacketsToGuest < tcpDown/1500 {
		t.Errorf("tcp flow counted %d/%d bytes in %d/%d packets, want %d/%d bytes", tcpFlow.BytesFromGuest, tcpFlow.BytesToGuest,
			tcpFlow.PacketsFromGuest, tcpFlow.PacketsToGuest, tcpUp, tcpDown)
	}
	udpFlow := oneFlow(t, cl, "udp")
	guestUDPAddr := netip.MustParseAddrPort(uc.LocalAddr().String())
	if udpFlow.Guest != guestUDPAddr || udpFlow.Remote != udpDst || udpFlow.State != "replied" ||
		udpFlow.BytesFromGuest != udpSize || udpFlow.BytesToGuest != udpSize || udpFlow.PacketsFromGuest != 1 || udpFlow.PacketsToGuest != 1 {
		t.Errorf("udp flow %+v, want %s -> %s, replied, one datagram of %d bytes each way", udpFlow, guestUDPAddr, udpDst, udpSize)
	}
	if f, err := cl.Flows(ctx, url.Values{"port": {"80"}}); err != nil || len(f) != 1 || f[0].Proto != flowtable.TCP {
		t.Errorf("flows?port=80 = %+v, %v; want the tcp flow alone", f, err)
	}
	if f, err := cl.Flows(ctx, url.Values{"addr": {"198.18.0.2"}}); err != nil || len(f) != 1 || f[0].Proto != flowtable.UDP {
		t.Errorf("flows?addr=198.18.0.2 = %+v, %v; want the udp flow alone", f, err)
	}

	m := scrape(t, cl)
	out := map[string]string{"direction": "outbound"}
	for _, c := range []struct {
		name, proto string
		want        float64
	}{
		{"masq_flow_bytes_from_guest_total", "tcp", tcpUp}, {"masq_flow_bytes_to_guest_total", "tcp", tcpDown},
		{"masq_flow_bytes_from_guest_total", "udp", udpSize}, {"masq_flow_bytes_to_guest_total", "udp", udpSize},
		{"masq_flow_packets_from_guest_total", "udp", 1}, {"masq_flow_packets_to_guest_total", "udp", 1},
		{"masq_flows_opened_total", "tcp", 1}, {"masq_flows_opened_total", "udp", 1},
		{"masq_flows_open", "tcp", 1}, {"masq_flows_closed_total", "tcp", 0},
	} {
		if got := value(t, m, c.name, with(out, "proto", c.proto)); got != c.want {
			t.Errorf("%s{proto=%q} = %v, want %v", c.name, c.proto, got, c.want)
		}
	}
	if h := m["masq_dial_duration_seconds"]; h == nil || histCount(h, "outbound", "connected") != 1 {
		t.Errorf("masq_dial_duration_seconds has not the one outbound dial")
	}
	for _, name := range []string{"masq_link_frames_total", "go_goroutines", "process_open_fds", "masq_netstack_tcp_retransmits_total"} {
		if m[name] == nil {
			t.Errorf("no %s in /metrics", name)
		}
	}

	tc.Close() // the guest's FIN; the peer closes after it
	waitFlows(t, cl, "tcp", 0)
	m = scrape(t, cl)
	if got := value(t, m, "masq_flows_closed_total", with(out, "proto", "tcp")); got != 1 {
		t.Errorf("masq_flows_closed_total{tcp} = %v after close, want 1", got)
	}
	if got := value(t, m, "masq_flow_bytes_to_guest_total", with(out, "proto", "tcp")); got != tcpDown {
		t.Errorf("masq_flow_bytes_to_guest_total{tcp} = %v after close, want %d: a closed flow's bytes stay counted", got, tcpDown)
	}
}

// waitReady polls /readyz until it answers, for at most 10 s.
func waitReady(t *testing.T, cl *control.Client) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := cl.Raw(context.Background(), "/readyz", nil)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz: %v after 10s", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// guestTCP connects the guest to dst, writes tcpUp bytes and reads
// tcpDown back.
func guestTCP(t *testing.T, g *memguest.Guest, dst netip.AddrPort) *gonet.TCPConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := gonet.DialContextTCP(ctx, g.Stack, memguest.FullAddress(dst), ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(make([]byte, tcpUp)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, tcpDown)); err != nil {
		t.Fatal(err)
	}
	return c
}

// guestUDPExchange sends one udpSize datagram to dst and reads its echo.
func guestUDPExchange(t *testing.T, g *memguest.Guest, dst netip.AddrPort) *gonet.UDPConn {
	t.Helper()
	c, err := gonet.DialUDP(g.Stack, &tcpip.FullAddress{NIC: memguest.NIC, Addr: memguest.Addr(netip.MustParseAddr("10.0.2.2"))},
		nil, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.WriteTo(make([]byte, udpSize), net.UDPAddrFromAddrPort(dst)); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, _, err := c.ReadFrom(make([]byte, 2048)); err != nil || n != udpSize {
		t.Fatalf("udp echo: %d bytes, %v", n, err)
	}
	return c
}

// oneFlow returns the one flow of proto /flows lists.
func oneFlow(t *testing.T, cl *control.Client, proto string) flowtable.Info {
	t.Helper()
	f, err := cl.Flows(context.Background(), url.Values{"proto": {proto}})
	if err != nil {
		t.Fatal(err)
	}
	if len(f) != 1 {
		t.Fatalf("/flows?proto=%s lists %d flows, want 1: %+v", proto, len(f), f)
	}
	return f[0]
}

// waitFlows polls /flows until it lists n flows of proto, for at most 10 s.
func waitFlows(t *testing.T, cl *control.Client, proto string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		f, err := cl.Flows(context.Background(), url.Values{"proto": {proto}})
		if err == nil && len(f) == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/flows?proto=%s: %d flows (%v) after 10s, want %d", proto, len(f), err, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// scrape reads /metrics and parses it with Prometheus's text parser.
func scrape(t *testing.T, cl *control.Client) map[string]*dto.MetricFamily {
	t.Helper()
	body, err := cl.Raw(context.Background(), "/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	m, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	return m
}

// with returns labels plus name=value.
func with(labels map[string]string, name, value string) map[string]string {
	out := map[string]string{name: value}
	for k, v := range labels {
		out[k] = v
	}
	return out
}

// value returns the sample of family name whose labels include labels.
func value(t *testing.T, m map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	t.Helper()
	fam := m[name]
	if fam == nil {
		t.Fatalf("no %s in /metrics", name)
	}
	for _, s := range fam.GetMetric() {
		if hasLabels(s, labels) {
			switch {
			case s.Counter != nil:
				return s.Counter.GetValue()
			case s.Gauge != nil:
				return s.Gauge.GetValue()
			}
		}
	}
	t.Fatalf("no %s%v in /metrics", name, labels)
	return 0
}

func hasLabels(s *dto.Metric, labels map[string]string) bool {
	n := 0
	for _, l := range s.GetLabel() {
		if v, ok := labels[l.GetName()]; ok && v == l.GetValue() {
			n++
		}
	}
	return n == len(labels)
}

// histCount returns the sample count of a histogram's series.
func histCount(fam *dto.MetricFamily, direction, result string) uint64 {
	for _, s := range fam.GetMetric() {
		if hasLabels(s, map[string]string{"direction": direction, "result": result}) {
			return s.GetHistogram().GetSampleCount()
		}
	}
	return 0
}

// TestReadyzWaitsForTheGuestOnASocket: with --socket, /readyz and
// /status say the link is down until QEMU (here an in-memory guest)
// connects.
func TestReadyzWaitsForTheGuestOnASocket(t *testing.T) {
	dir := t.TempDir()
	path, sock := filepath.Join(dir, "vm.sock"), filepath.Join(dir, "control.sock")
	startMasqNoGuest(t, 1500, func(c *masq.Config) {
		c.Socket = link.SocketAddr{Path: path}
		c.Control = sock
	})
	cl := control.NewClient(sock)
	defer cl.Close()
	ctx := context.Background()
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if _, err = cl.Raw(ctx, "/readyz", nil); err != nil && strings.Contains(err.Error(), "guest link down") {
			break
		}
	}
	if err == nil || !strings.Contains(err.Error(), "guest link down") {
		t.Fatalf("/readyz before QEMU connects: %v, want 503 guest link down", err)
	}
	if s, err := cl.Status(ctx); err != nil || s.Link.Up || s.Link.Kind != "socket" {
		t.Fatalf("status %+v, %v: want a socket link, down", s.Link, err)
	}
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	memguest.NewStream(t, 1500, conn)
	waitReady(t, cl)
	if s, err := cl.Status(ctx); err != nil || !s.Link.Up {
		t.Fatalf("status %+v, %v: want the link up once QEMU connected", s.Link, err)
	}
}
