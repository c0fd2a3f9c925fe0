// Package memguest is the guest of masq's tests that need no root: a second
// gVisor stack joined to masq's by an AF_UNIX SOCK_SEQPACKET socketpair,
// which carries one Ethernet frame per message exactly as a tap fd does.
// masq's side of the pair goes through the same fdbased link as a real tap.
// NewStream joins it instead over a stream connection as QEMU's stream
// netdev does (see stream.go).
package memguest

import (
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/fdbased"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/raw"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

// NIC is the guest stack's only NIC.
const NIC tcpip.NICID = 1

// MAC is the guest's link address (QEMU's default OUI, as a VM would have).
const MAC = tcpip.LinkAddress("\x52\x54\x00\x12\x34\x56")

// Guest is an in-memory guest. Its Stack is for the test to use directly.
type Guest struct {
	// Stack is the guest's network stack.
	Stack *stack.Stack

	fd      int  // the guest's end of the link; -1 on a stream link
	offload bool // frames carry a virtio-net header

	stream *streamLink // the guest's end of a stream link, or nil
	ndp    *ndpRecorder
}

// New returns a guest with no addresses on a link of the given MTU, and the
// file descriptor of masq's end of the link. The guest's stack and its end
// are released when the test ends; masq's end is the caller's to close or
// to hand to something that takes ownership of it.
func New(tb testing.TB, mtu uint32) (*Guest, int) {
	tb.Helper()
	return newGuest(tb, &fdbased.Options{MTU: mtu, EthernetHeader: true, Address: MAC})
}

// NewOffload is New for a link whose frames carry virtio-net headers with
// checksum and TSO offloads, as masq's tap does (link.NewVnet):
// the guest sends and takes TCP segments of up to 64 KiB with partial
// checksums, as a Linux guest behind such a tap does.
func NewOffload(tb testing.TB, mtu uint32) (*Guest, int) {
	tb.Helper()
	return newGuest(tb, &fdbased.Options{MTU: mtu, EthernetHeader: true, Address: MAC,
		GSOMaxSize: 1 << 16, RXChecksumOffload: true})
}

func newGuest(tb testing.TB, opts *fdbased.Options) (*Guest, int) {
	tb.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		tb.Fatalf("socketpair: %v", err)
	}
	growBuffers(fds[0])
	growBuffers(fds[1])
	opts.FDs = []int{fds[1]}
	link, err := fdbased.New(opts)
	if err != nil {
		tb.Fatalf("guest link: %v", err)
	}
	rec := new(ndpRecorder)
	s := newStack(tb, link, rec, func() { unix.Close(fds[1]) })
	return &Guest{Stack: s, fd: fds[1], offload: opts.GSOMaxSize != 0, ndp: rec}, fds[0]
}

// newStack returns the guest's stack on link, destroyed when the test
// ends, after which release runs. Its IPv6 handles Router Advertisements
// as a host does (soliciting none), telling rec what it learns; it
// adopts no route or address from them (routes are the test's to set),
// and runs no duplicate address detection, so addresses work at once.
func newStack(tb testing.TB, link stack.LinkEndpoint, rec *ndpRecorder, release func()) *stack.Stack {
	tb.Helper()
	ndp := ipv6.DefaultNDPConfigurations()
	ndp.HandleRAs = ipv6.HandlingRAsEnabledWhenForwardingDisabled
	ndp.DiscoverDefaultRouters = true
	ndp.AutoGenGlobalAddresses = false
	// It solicits none: a test's own frames are then the only ones masq
	// sees from the guest (masq advertises at start unsolicited).
	ndp.MaxRtrSolicitations = 0
	s := stack.New(stack.Options{
		NetworkProtocols: []stack.NetworkProtocolFactory{ipv4.NewProtocol,
			ipv6.NewProtocolWithOptions(ipv6.Options{NDPConfigs: ndp, NDPDisp: rec}), arp.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4, icmp.NewProtocol6},
		RawFactory:         raw.EndpointFactory{}, // for WatchICMP
	})
	sack := tcpip.TCPSACKEnabled(true) // as a Linux guest has it
	s.SetTransportProtocolOption(tcp.ProtocolNumber, &sack)
	tb.Cleanup(func() {
		s.Destroy()
		release()
	})
	if err := s.CreateNIC(NIC, link); err != nil {
		tb.Fatalf("guest NIC: %v", err)
	}
	s.SetRouteTable([]tcpip.Route{
		{Destination: header.IPv4EmptySubnet, NIC: NIC},
		{Destination: header.IPv6EmptySubnet, NIC: NIC},
	})
	return s
}

// AddAddress assigns p (address and prefix length) to the guest's NIC.
func (g *Guest) AddAddress(tb testing.TB, p netip.Prefix) {
	tb.Helper()
	pa := tcpip.ProtocolAddress{
		Protocol:          protocolOf(p.Addr()),
		AddressWithPrefix: tcpip.AddressWithPrefix{Address: Addr(p.Addr()), PrefixLen: p.Bits()},
	}
	if err := g.Stack.AddProtocolAddress(NIC, pa, stack.AddressProperties{}); err != nil {
		tb.Fatalf("guest address %s: %v", p, err)
	}
}

// UseGateways routes everything off-link through the given gateways, as
// a real guest's default routes do: the guest resolves only the gateway's
// link address, never a remote host's. On-link traffic (the subnets of
// the guest's addresses and link-local) still goes out directly.
func (g *Guest) UseGateways(gws ...netip.Addr) {
	var routes []tcpip.Route
	for _, gw := range gws {
		if gw.Is4() {
			routes = append(routes, tcpip.Route{Destination: onLink(gw, 24), NIC: NIC},
				tcpip.Route{Destination: header.IPv4EmptySubnet, Gateway: Addr(gw), NIC: NIC})
		} else {
			routes = append(routes, tcpip.Route{Destination: onLink(gw, 120), NIC: NIC},
				tcpip.Route{Destination: onLink(netip.MustParseAddr("fe80::"), 64), NIC: NIC},
				tcpip.Route{Destination: header.IPv6EmptySubnet, Gateway: Addr(gw), NIC: NIC})
		}
	}
	g.Stack.SetRouteTable(routes)
}

// onLink is the subnet of a with the given prefix length.
func onLink(a netip.Addr, bits int) tcpip.Subnet {
	p := netip.PrefixFrom(a, bits).Masked()
	return tcpip.AddressWithPrefix{Address: Addr(p.Addr()), PrefixLen: bits}.Subnet()
}

// Neighbor returns the link address the guest resolved a to, if any.
func (g *Guest) Neighbor(a netip.Addr) (tcpip.LinkAddress, bool) {
	entries, err := g.Stack.Neighbors(NIC, protocolOf(a))
	if err != nil {
		return "", false
	}
	for _, e := range entries {
		if e.Addr == Addr(a) && e.LinkAddr != "" {
			return e.LinkAddr, true
		}
	}
	return "", false
}

// RemoveAddress removes a from the guest's NIC.
func (g *Guest) RemoveAddress(tb testing.TB, a netip.Addr) {
	tb.Helper()
	if err := g.Stack.RemoveAddress(NIC, Addr(a)); err != nil {
		tb.Fatalf("remove guest address %s: %v", a, err)
	}
}

// Addr converts a netip address to gVisor's form.
func Addr(a netip.Addr) tcpip.Address {
	if a.Is4() {
		return tcpip.AddrFrom4(a.As4())
	}
	return tcpip.AddrFrom16(a.As16())
}

// FullAddress converts a netip address and port to gVisor's form on NIC.
func FullAddress(ap netip.AddrPort) tcpip.FullAddress {
	fa := tcpip.FullAddress{NIC: NIC, Port: ap.Port()}
	if !ap.Addr().IsUnspecified() {
		fa.Addr = Addr(ap.Addr())
	}
	return fa
}

func protocolOf(a netip.Addr) tcpip.NetworkProtocolNumber {
	if a.Is4() {
		return ipv4.ProtocolNumber
	}
	return ipv6.ProtocolNumber
}

// linkBuffer is the socket buffer each end of the link asks for. A tap's
// queue holds 1000 frames of any size; a socketpair's holds bytes, ~200
// KiB by default: three 64 KiB frames, so jumbo bursts would be dropped
// at the link, which a tap would not do. Root may exceed net.core.wmem_max.
const linkBuffer = 8 << 20

// growBuffers raises fd's send and receive buffers toward linkBuffer.
func growBuffers(fd int) {
	for _, opt := range [][2]int{{unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}, {unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}} {
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, opt[0], linkBuffer) != nil {
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, opt[1], linkBuffer)
		}
	}
}

// vnetHdrSize is the size of the virtio-net header (without num_buffers)
// before each frame of an offload link: gVisor's definition, which
// package stack's link uses too.
const vnetHdrSize = header.VirtioNetHeaderSize

// WriteFrame sends frame, a whole Ethernet frame, to masq as the guest's
// kernel would, bypassing the guest's stack: tests of hostile or odd
// frames build their own. On an offload link the frame goes with a
// virtio-net header whose flags are vnetFlags (0: nothing vouched for).
func (g *Guest) WriteFrame(frame []byte, vnetFlags byte) error {
	if g.stream != nil {
		return g.stream.write([][]byte{frame})
	}
	if g.offload {
		hdr := make([]byte, vnetHdrSize, vnetHdrSize+len(frame))
		hdr[0] = vnetFlags
		frame = append(hdr, frame...)
	}
	_, err := unix.Write(g.fd, frame)
	return err
}

// NewOnLink returns a guest with no addresses whose stack runs on ep, a
// link endpoint the caller drives (a test's own device driver, say). The
// guest's stack is destroyed when the test ends, after which release, if
// not nil, runs.
func NewOnLink(tb testing.TB, ep stack.LinkEndpoint, release func()) *Guest {
	tb.Helper()
	if release == nil {
		release = func() {}
	}
	rec := new(ndpRecorder)
	s := newStack(tb, ep, rec, release)
	return &Guest{Stack: s, fd: -1, ndp: rec}
}
