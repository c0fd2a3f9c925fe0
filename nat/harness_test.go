package nat_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"

	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/masqnet/masq/internal/memguest"
	"github.com/masqnet/masq/link"
	"github.com/masqnet/masq/nat"
	"github.com/masqnet/masq/stack"
)

var (
	guest4 = netip.MustParsePrefix("10.0.2.2/24")
	guest6 = netip.MustParsePrefix("fd10:0:2::2/120")
	gw4    = netip.MustParseAddr("10.0.2.1")
	gw6    = netip.MustParseAddr("fd10:0:2::1")
)

// policy is KubeVirt's default network.
func policy() nat.Policy {
	return nat.Policy{
		Guest4: guest4.Addr(), Net4: guest4.Masked(),
		Guest6: guest6.Addr(), Net6: guest6.Masked(),
	}
}

// harness joins an in-memory guest (10.0.2.2, fd10:0:2::2) to a masq stack
// with a NAT whose pod is pod, and stops everything at the end of the test.
func harness(t testing.TB, pod nat.Pod, mod func(*nat.Config)) (*memguest.Guest, *nat.NAT) {
	t.Helper()
	return harnessMTU(t, 1500, pod, mod)
}

// harnessMTU is harness with a link of the given MTU.
func harnessMTU(t testing.TB, mtu uint32, pod nat.Pod, mod func(*nat.Config)) (*memguest.Guest, *nat.NAT) {
	t.Helper()
	return harnessLink(t, mtu, false, pod, mod)
}

// harnessLink is harnessMTU; with offload, over a link with virtio-net
// headers and TSO: masq's tap link (link.NewVnet) facing a guest that
// uses them.
func harnessLink(t testing.TB, mtu uint32, offload bool, pod nat.Pod, mod func(*nat.Config)) (*memguest.Guest, *nat.NAT) {
	t.Helper()
	newGuest, newLink := memguest.New, link.NewFD
	if offload {
		newGuest, newLink = memguest.NewOffload, newVnet
	}
	g, fd := newGuest(t, mtu)
	link, err := newLink(fd, mtu, nil)
	if err != nil {
		t.Fatal(err)
	}
	return harnessOn(t, g, link, mtu, pod, mod, func() { unix.Close(fd) })
}

// harnessOn is harnessLink on a link already made, joined to g; release
// runs when everything is stopped.
func harnessOn(t testing.TB, g *memguest.Guest, link gstack.LinkEndpoint, mtu uint32, pod nat.Pod, mod func(*nat.Config), release func()) (*memguest.Guest, *nat.NAT) {
	t.Helper()
	st, err := stack.New(link, stack.Config{MTU: mtu,
		IPv4: netip.PrefixFrom(gw4, 24), IPv6: netip.PrefixFrom(gw6, 120)})
	if err != nil {
		t.Fatal(err)
	}
	cfg := nat.Config{Policy: policy(), Pod: pod}
	if b, ok := link.(interface{ OnBurstEnd(func()) }); ok {
		cfg.BurstEnd = b.OnBurstEnd // as masq wires its links
	}
	if mod != nil {
		mod(&cfg)
	}
	n, err := nat.New(st, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("NAT.Run did not return within 10s")
		}
		st.Close()
		release()
	})
	g.AddAddress(t, guest4)
	g.AddAddress(t, guest6)
	g.UseGateways(gw4, gw6)
	return g, n
}

// dial connects from the guest to dst within timeout.
func dial(g *memguest.Guest, dst netip.AddrPort, timeout time.Duration) (*gonet.TCPConn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	proto := ipv4.ProtocolNumber
	if dst.Addr().Is6() {
		proto = ipv6.ProtocolNumber
	}
	return gonet.DialContextTCP(ctx, g.Stack, memguest.FullAddress(dst), proto)
}

// guestUDP opens a guest UDP socket on an ephemeral port of local's family.
func guestUDP(t testing.TB, g *memguest.Guest, local netip.Addr) *gonet.UDPConn {
	t.Helper()
	proto := ipv4.ProtocolNumber
	if local.Is6() {
		proto = ipv6.ProtocolNumber
	}
	c, err := gonet.DialUDP(g.Stack, &tcpip.FullAddress{NIC: memguest.NIC, Addr: memguest.Addr(local)}, nil, proto)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// fakePod is the pod side for tests: destinations in routes go to
// loopback servers, those in fail get the listed error, those in hang
// block until the dial's context ends; loopback destinations (the policy's
// mappings) are dialled as they are. Anything else is unreachable: tests
// never send traffic off this machine.
type fakePod struct {
	mu     sync.Mutex
	routes map[netip.AddrPort]netip.AddrPort
	fail   map[netip.AddrPort]error
	hang   map[netip.AddrPort]bool
	// hangLinger is how long a hanging dial takes to return once its
	// context ends; hangDone counts the hanging dials that returned.
	hangLinger time.Duration
	hangDone   int
	up         map[netip.Addr]bool // hosts that answer pings
	noPing     bool                // the pod gives no ping sockets
	dials      int
	// sink, when set, is a network whose destinations take anything and
	// never answer: a UDP flow opened toward it gets a sinkUDP, no socket.
	sink netip.Prefix
	ttls []uint8 // the TTLs UDP datagrams were sent with, in order
	dfs  []bool  // and their "don't fragment"
	// gsoSends counts WriteGSO calls that sent, gsoDatagrams what they
	// carried; refuseGSO fails them with EINVAL, as a kernel does when a
	// segment exceeds the path MTU.
	gsoSends, gsoDatagrams int
	refuseGSO              bool
	// rewrite, when set, changes each error the pod's sockets report
	// (a loopback port unreachable is the only one the kernel gives a
	// test): an error of any kind, from any reporter, then reaches masq
	// exactly as the kernel would deliver it.
	rewrite func(nat.PodError) nat.PodError
	// dialTTLs are the TTLs of the dials made with one (DialTCPTTL), in
	// order; dialTTLErr, when set, fails them, as an ICMP error would.
	dialTTLs   []uint8
	dialTTLErr *nat.DialError
}

// DialTCPTTL records the TTL, then fails with dialTTLErr or dials as
// DialTCP does.
func (p *fakePod) DialTCPTTL(ctx context.Context, dst netip.AddrPort, ttl uint8) (net.Conn, error) {
	p.mu.Lock()
	p.dialTTLs = append(p.dialTTLs, ttl)
	derr := p.dialTTLErr
	p.mu.Unlock()
	if derr != nil {
		e := *derr
		e.Dst = dst
		return nil, &e
	}
	return p.DialTCP(ctx, dst)
}

func newFakePod() *fakePod {
	return &fakePod{routes: map[netip.AddrPort]netip.AddrPort{},
		fail: map[netip.AddrPort]error{}, hang: map[netip.AddrPort]bool{}, up: map[netip.Addr]bool{}}
}

// route sends dst to the loopback address to.
func (p *fakePod) route(dst, to netip.AddrPort) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.routes[dst] = to
}

// target resolves dst as the pod would reach it.
func (p *fakePod) target(dst netip.AddrPort) (netip.AddrPort, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if to, ok := p.routes[dst]; ok {
		return to, nil
	}
	if err, ok := p.fail[dst]; ok {
		return dst, err
	}
	if dst.Addr().IsLoopback() {
		return dst, nil
	}
	return dst, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.EHOSTUNREACH}
}

func (p *fakePod) DialTCP(ctx context.Context, dst netip.AddrPort) (net.Conn, error) {
	p.mu.Lock()
	p.dials++
	hang := p.hang[dst]
	p.mu.Unlock()
	if hang {
		<-ctx.Done()
		time.Sleep(p.hangLinger)
		p.mu.Lock()
		p.hangDone++
		p.mu.Unlock()
		return nil, ctx.Err()
	}
	to, err := p.target(dst)
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", to.String())
}

func (p *fakePod) ListenUDP(dst netip.Addr, port uint16) (nat.UDPConn, error) {
	if p.sink.IsValid() && p.sink.Contains(dst) {
		return &sinkUDP{sink: p.sink, done: make(chan struct{})}, nil
	}
	c, err := nat.KernelPod{}.ListenUDP(netip.IPv4Unspecified(), port) // loopback servers are IPv4
	if err != nil {
		return nil, err
	}
	return &fakeUDP{UDPConn: c, pod: p}, nil
}

// fakeUDP rewrites destinations through the fake pod's routes and maps
// replies back to the address the flow sent to.
type fakeUDP struct {
	nat.UDPConn
	pod *fakePod
	mu  sync.Mutex
	rev map[netip.AddrPort]netip.AddrPort
}

func (c *fakeUDP) WriteToUDPAddrPort(b []byte, dst netip.AddrPort) (int, error) {
	to, err := c.target(dst)
	if err != nil {
		return 0, err
	}
	return c.UDPConn.WriteToUDPAddrPort(b, to)
}

// target is where the pod routes dst; replies from there are mapped back.
func (c *fakeUDP) target(dst netip.AddrPort) (netip.AddrPort, error) {
	to, err := c.pod.target(dst)
	if err != nil {
		return to, err
	}
	c.mu.Lock()
	if c.rev == nil {
		c.rev = map[netip.AddrPort]netip.AddrPort{}
	}
	c.rev[to] = dst
	c.mu.Unlock()
	return to, nil
}

func (c *fakeUDP) ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error) {
	n, from, err := c.UDPConn.ReadFromUDPAddrPort(b)
	from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	c.mu.Lock()
	if orig, ok := c.rev[from]; ok {
		from = orig
	}
	c.mu.Unlock()
	return n, from, err
}

// SyscallConn exposes the socket so the NAT can wait without a buffer.
func (c *fakeUDP) SyscallConn() (syscall.RawConn, error) {
	return c.UDPConn.(syscall.Conn).SyscallConn()
}

// ReadPodError passes on the kernel socket's errors (loopback's port
// unreachable), their destination and reporter mapped back through the
// routes as replies are.
func (c *fakeUDP) ReadPodError() (nat.PodError, bool) {
	e, ok := c.UDPConn.(nat.ErrorConn).ReadPodError()
	if !ok {
		return e, false
	}
	c.mu.Lock()
	if orig, ok := c.rev[e.Dst]; ok {
		if e.From == e.Dst.Addr() {
			e.From = orig.Addr()
		}
		e.Dst = orig
	}
	c.mu.Unlock()
	c.pod.mu.Lock()
	rewrite := c.pod.rewrite
	c.pod.mu.Unlock()
	if rewrite != nil {
		e = rewrite(e)
	}
	return e, true
}

// WriteToTTL records the TTL and df and sends as WriteToUDPAddrPort.
func (c *fakeUDP) WriteToTTL(b []byte, dst netip.AddrPort, ttl uint8, df bool) (int, error) {
	c.pod.mu.Lock()
	c.pod.ttls = append(c.pod.ttls, ttl)
	c.pod.dfs = append(c.pod.dfs, df)
	c.pod.mu.Unlock()
	return c.WriteToUDPAddrPort(b, dst)
}

// WriteGSO counts the batch and sends it through the kernel socket with
// UDP segmentation, to where the pod routes dst; with refuseGSO it fails.
func (c *fakeUDP) WriteGSO(b []byte, size int, dst netip.AddrPort, ttl uint8, df bool) error {
	c.pod.mu.Lock()
	refuse := c.pod.refuseGSO
	if !refuse {
		c.pod.gsoSends++
		c.pod.gsoDatagrams += (len(b) + size - 1) / size
	}
	c.pod.mu.Unlock()
	if refuse {
		return &net.OpError{Op: "write", Net: "udp", Err: os.NewSyscallError("sendmsg", syscall.EINVAL)}
	}
	to, err := c.target(dst)
	if err != nil {
		return err
	}
	return c.UDPConn.(nat.GSOConn).WriteGSO(b, size, to, ttl, df)
}

// tcpServer runs handle for each connection to a loopback listener until
// the test ends.
func tcpServer(t testing.TB, handle func(net.Conn)) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { defer c.Close(); handle(c) })
		}
	})
	return netip.MustParseAddrPort(ln.Addr().String())
}

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ap := netip.MustParseAddrPort(ln.Addr().String())
	ln.Close()
	return ap
}

// isRefused reports whether err is a refused connection (gonet reports
// gVisor's ErrConnectionRefused by its text).
func isRefused(err error) bool {
	return err != nil && (errors.Is(err, syscall.ECONNREFUSED) || strings.Contains(err.Error(), "connection was refused"))
}

// ListenPing gives a fake ping socket that answers every echo request to
// a routed or loopback address, as a host's kernel would, with its own
// identifier (4242) in place of the sender's.
func (p *fakePod) ListenPing(dst netip.Addr) (nat.UDPConn, error) {
	if p.noPing {
		return nil, syscall.EACCES
	}
	return &fakePing{pod: p, replies: make(chan pingReply, 16), done: make(chan struct{})}, nil
}

type pingReply struct {
	msg  []byte
	from netip.AddrPort
}

type fakePing struct {
	pod     *fakePod
	replies chan pingReply
	done    chan struct{}
	once    sync.Once
}

func (c *fakePing) WriteToUDPAddrPort(b []byte, dst netip.AddrPort) (int, error) {
	if !c.pod.answers(dst.Addr()) {
		return len(b), nil // no reply, like a host that is down
	}
	if len(b) < 8 || (b[0] != 8 && b[0] != 128) {
		return 0, syscall.EINVAL
	}
	reply := append([]byte(nil), b...)
	reply[0] = map[byte]byte{8: 0, 128: 129}[b[0]]
	reply[4], reply[5] = 0x10, 0x92 // 4242
	select {
	case c.replies <- pingReply{reply, netip.AddrPortFrom(dst.Addr(), 0)}:
	default:
	}
	return len(b), nil
}

func (c *fakePing) ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error) {
	select {
	case r := <-c.replies:
		return copy(b, r.msg), r.from, nil
	case <-c.done:
		return 0, netip.AddrPort{}, net.ErrClosed
	}
}

func (c *fakePing) Close() error {
	c.once.Do(func() { close(c.done) })
	return nil
}

// answers reports whether a pinged address is up.
func (p *fakePod) answers(a netip.Addr) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.up[a]
}

// sinkUDP is a pod socket for floods: it takes datagrams to its sink
// network and sends nothing (nothing leaves the test), and refuses other
// destinations as unreachable. It holds no file descriptor, so tests can
// open as many flows as masq allows; like a real socket its flow waits for
// replies without holding a buffer (SyscallConn).
type sinkUDP struct {
	sink netip.Prefix
	done chan struct{}
	once sync.Once
}

func (c *sinkUDP) WriteToUDPAddrPort(b []byte, dst netip.AddrPort) (int, error) {
	if !c.sink.Contains(dst.Addr()) {
		return 0, &net.OpError{Op: "write", Net: "udp", Err: syscall.EHOSTUNREACH}
	}
	return len(b), nil
}

func (c *sinkUDP) ReadFromUDPAddrPort([]byte) (int, netip.AddrPort, error) {
	<-c.done
	return 0, netip.AddrPort{}, net.ErrClosed
}

func (c *sinkUDP) Close() error {
	c.once.Do(func() { close(c.done) })
	return nil
}

// SyscallConn gives a RawConn whose reads wait until the socket closes.
func (c *sinkUDP) SyscallConn() (syscall.RawConn, error) { return sinkRaw(c.done), nil }

// sinkRaw is sinkUDP's RawConn: never readable, closed with its socket.
type sinkRaw chan struct{}

func (r sinkRaw) Control(func(uintptr)) error { return nil }

func (r sinkRaw) Read(func(uintptr) bool) error {
	<-r
	return net.ErrClosed
}

func (r sinkRaw) Write(func(uintptr) bool) error { return nil }

// newVnet is link.NewVnet as a constructor of any link endpoint.
func newVnet(fd int, mtu uint32, closed func(error)) (gstack.LinkEndpoint, error) {
	return link.NewVnet(fd, mtu, closed)
}
