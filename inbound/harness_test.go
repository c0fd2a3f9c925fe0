package inbound_test

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/masqnet/masq/inbound"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/masqnet/masq/internal/memguest"
	"github.com/masqnet/masq/link"
	"github.com/masqnet/masq/nat"
	"github.com/masqnet/masq/ports"
	"github.com/masqnet/masq/stack"
)

var (
	guest4 = netip.MustParsePrefix("10.0.2.2/24")
	guest6 = netip.MustParsePrefix("fd10:0:2::2/120")
	gw4    = netip.MustParseAddr("10.0.2.1")
	gw6    = netip.MustParseAddr("fd10:0:2::1")
)

// fakePod binds the loopback address of the family instead of the
// wildcard, so tests never open ports to the machine's network.
type fakePod struct {
	mu sync.Mutex
	// window, when set, is the only port range Listen binds; any other
	// port reports EADDRINUSE without a socket, as if held.
	window    [2]uint16
	requested map[uint16]bool // ports Listen was asked for
	loopback6 bool            // Listen binds ::1 instead of 127.0.0.1
}

func newFakePod() *fakePod { return &fakePod{requested: map[uint16]bool{}} }

// Listen implements inbound.Pod.
func (p *fakePod) Listen(proto ports.Protocol, fam inbound.Family, port uint16) (*inbound.Socket, error) {
	p.mu.Lock()
	p.requested[port] = true
	outside := p.window[1] != 0 && (port < p.window[0] || port > p.window[1])
	p.mu.Unlock()
	if outside {
		return nil, syscall.EADDRINUSE
	}
	// Loopback has no dual-stack address: a DualStack request gets the
	// IPv4 loopback; tests of IPv6 clients ask for IPv6 alone.
	family, typ, sa := unix.AF_INET, unix.SOCK_STREAM, unix.Sockaddr(&unix.SockaddrInet4{Port: int(port), Addr: [4]byte{127, 0, 0, 1}})
	if fam == inbound.IPv6 || p.loopback6 {
		family, sa = unix.AF_INET6, &unix.SockaddrInet6{Port: int(port), Addr: netip.IPv6Loopback().As16()}
	}
	if proto == ports.UDP {
		typ = unix.SOCK_DGRAM
	}
	fd, err := unix.Socket(family, typ|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return nil, err
	}
	if proto == ports.TCP {
		if err := unix.Listen(fd, 128); err != nil {
			unix.Close(fd)
			return nil, err
		}
	}
	return inbound.NewSocket(fd), nil
}

// EphemeralPorts implements inbound.Pod with the machine's range.
func (p *fakePod) EphemeralPorts() (uint16, uint16, error) {
	return inbound.KernelPod{}.EphemeralPorts()
}

// noWorld is the outbound side of the harness's NAT: the guest reaches
// nothing (inbound tests send nothing out), and nothing leaves this
// machine.
type noWorld struct{ nat.KernelPod }

func (noWorld) DialTCP(context.Context, netip.AddrPort) (net.Conn, error) {
	return nil, syscall.EHOSTUNREACH
}

func (noWorld) ListenUDP(netip.Addr, uint16) (nat.UDPConn, error) { return nil, syscall.EHOSTUNREACH }

func (noWorld) ListenPing(netip.Addr) (nat.UDPConn, error) { return nil, syscall.EACCES }

// harness joins an in-memory guest (10.0.2.2, fd10:0:2::2) to a masq
// stack served as masq serves it: a NAT, which hands the guest's UDP
// answers to the forwarder, and a forwarder of pod's ports, over the plain
// link or masq's vnet link. Everything stops at the end of the test.
func harness(t testing.TB, pod *fakePod, offload bool, mod func(*inbound.Config)) (*memguest.Guest, *inbound.Forwarder) {
	t.Helper()
	newGuest, newLink := memguest.New, link.NewFD
	if offload {
		newGuest, newLink = memguest.NewOffload, newVnet
	}
	g, fd := newGuest(t, 1500)
	link, err := newLink(fd, 1500, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := stack.New(link, stack.Config{MTU: 1500, IPv4: netip.PrefixFrom(gw4, 24), IPv6: netip.PrefixFrom(gw6, 120)})
	if err != nil {
		t.Fatal(err)
	}
	cfg := inbound.Config{Guest4: guest4.Addr(), Guest6: guest6.Addr(), Gateway4: gw4, Gateway6: gw6,
		Pod: pod, DialTimeout: 2 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	fwd, err := inbound.New(st, cfg)
	if err != nil {
		st.Close()
		unix.Close(fd)
		t.Fatal(err)
	}
	n, err := nat.New(st, nat.Config{Pod: noWorld{}, InboundReply: fwd.FromGuest, Policy: nat.Policy{
		Guest4: guest4.Addr(), Net4: guest4.Masked(), Guest6: guest6.Addr(), Net6: guest6.Masked()}})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { n.Run(ctx) })
	wg.Go(func() { fwd.Run(ctx) })
	t.Cleanup(func() {
		cancel()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return within 10s")
		}
		st.Close()
		unix.Close(fd)
	})
	g.AddAddress(t, guest4)
	g.AddAddress(t, guest6)
	g.UseGateways(gw4, gw6)
	return g, fwd
}

// inboundHarness forwards the ports of spec ("" for every port) to a
// guest over the plain link, with a 2 s dial timeout into the guest.
func inboundHarness(t *testing.T, pod *fakePod, spec string) (*memguest.Guest, *inbound.Forwarder) {
	t.Helper()
	return harness(t, pod, false, func(c *inbound.Config) {
		if spec != "" {
			set, err := ports.Parse(spec)
			if err != nil {
				t.Fatal(err)
			}
			c.Ports = &set
		}
	})
}

// newVnet is link.NewVnet as a constructor of any link endpoint.
func newVnet(fd int, mtu uint32, closed func(error)) (gstack.LinkEndpoint, error) {
	return link.NewVnet(fd, mtu, closed)
}
