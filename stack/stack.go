// Package stack owns the gVisor network stack that faces the guest: one NIC
// over a link endpoint (any of package link's, or an in-memory link in
// tests: it never knows which), the gateway's MAC and addresses, ARP and
// NDP, ICMP echo for the gateway, and the protocol options. It runs
// promiscuous with spoofing so that flows to any address can later be
// handed to packages nat and inbound. It knows nothing about policy.
package stack

import (
	"fmt"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

// nicID is the ID of the one NIC a Stack has: the link to the guest.
const nicID tcpip.NICID = 1

// GatewayMAC is the gateway's MAC address as KubeVirt's masquerade binding
// uses it (02:00:00:00:00:00, a locally administered unicast address).
const GatewayMAC = tcpip.LinkAddress("\x02\x00\x00\x00\x00\x00")

// Config is what a Stack needs to know of the guest's network. It is
// validated by the caller; New checks only what gVisor would reject.
type Config struct {
	// MTU is the largest IP packet, in bytes, sent to or accepted from the
	// guest. It must be within masq.MinMTU..masq.MaxMTU (68, IPv4's
	// minimum, to 65520), which masq.Config.Validate checks.
	MTU uint32

	// MAC is the gateway's link address. Empty means GatewayMAC.
	MAC tcpip.LinkAddress

	// IPv4 is the gateway's IPv4 address with the guest network's prefix
	// length, e.g. 10.0.2.1/24. It must be valid.
	IPv4 netip.Prefix

	// IPv6 is the gateway's IPv6 address with the guest network's prefix
	// length, e.g. fd10:0:2::1/120. The zero Prefix means no IPv6 address
	// (the link-local address is still there for NDP).
	IPv6 netip.Prefix
}

// Stack is a gVisor network stack with one NIC facing the guest. It is safe
// for concurrent use. Close releases it.
type Stack struct {
	ns     *stack.Stack
	cfg    Config
	filter *neighborFilter
}

// New creates a Stack whose NIC sends and receives Ethernet frames through
// link. The NIC stays down, reading nothing, until Start: packet handlers
// (package nat's) must be installed before packets flow, as gVisor does
// not synchronise installing them with delivery. New takes ownership of
// link: Close stops it. The link's own resources (a tap fd, say) stay the
// caller's to close after Close returns.
func New(link stack.LinkEndpoint, cfg Config) (*Stack, error) {
	if cfg.MAC == "" {
		cfg.MAC = GatewayMAC
	}
	ns := stack.New(stack.Options{
		NetworkProtocols: []stack.NetworkProtocolFactory{
			ipv4.NewProtocol,
			// The zero NDP and DAD configurations are what a gateway
			// wants: no router solicitations, no DAD delay before the
			// gateway address answers.
			ipv6.NewProtocolWithOptions(ipv6.Options{AutoGenLinkLocal: true}),
			arp.NewProtocol,
		},
		TransportProtocols: []stack.TransportProtocolFactory{
			tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4, icmp.NewProtocol6,
		},
	})
	s := &Stack{ns: ns, cfg: cfg}
	if err := tuneTCP(ns); err != nil {
		ns.Destroy()
		return nil, err
	}
	if err := s.configure(link); err != nil {
		ns.Destroy()
		return nil, err
	}
	return s, nil
}

// configure attaches link as the NIC and gives it the gateway's identity.
func (s *Stack) configure(link stack.LinkEndpoint) error {
	link.SetLinkAddress(s.cfg.MAC)
	s.filter = newNeighborFilter(link, s.cfg.IPv4.Addr(), s.cfg.IPv6.Addr(), s.cfg.MAC)
	if err := s.ns.CreateNICWithOptions(nicID, s.filter, stack.NICOptions{Name: "guest", Disabled: true}); err != nil {
		return fmt.Errorf("create NIC: %s", err)
	}
	if err := s.ns.SetNICMTU(nicID, s.cfg.MTU); err != nil {
		return fmt.Errorf("set MTU %d: %s", s.cfg.MTU, err)
	}
	// Promiscuous: accept packets to any destination (the guest's flows
	// to the world). Spoofing: send from any source (replies from the
	// world's addresses, inbound connections from the real client).
	if err := s.ns.SetPromiscuousMode(nicID, true); err != nil {
		return fmt.Errorf("set promiscuous mode: %s", err)
	}
	if err := s.ns.SetSpoofing(nicID, true); err != nil {
		return fmt.Errorf("set spoofing: %s", err)
	}
	var routes []tcpip.Route
	for _, p := range []netip.Prefix{s.cfg.IPv4, s.cfg.IPv6} {
		if !p.IsValid() {
			continue
		}
		if err := s.addAddress(p); err != nil {
			return err
		}
		routes = append(routes, defaultRoute(p.Addr()))
	}
	s.ns.SetRouteTable(routes)
	return nil
}

// addAddress assigns the gateway address p to the NIC.
func (s *Stack) addAddress(p netip.Prefix) error {
	pa := tcpip.ProtocolAddress{
		Protocol: protocolOf(p.Addr()),
		AddressWithPrefix: tcpip.AddressWithPrefix{
			Address:   addrFrom(p.Addr()),
			PrefixLen: p.Bits(),
		},
	}
	if err := s.ns.AddProtocolAddress(nicID, pa, stack.AddressProperties{}); err != nil {
		return fmt.Errorf("add gateway address %s: %s", p, err)
	}
	return nil
}

// defaultRoute sends everything of a's family out of the guest NIC: the
// guest is the only thing on the other side of the link.
func defaultRoute(a netip.Addr) tcpip.Route {
	if a.Is4() {
		return tcpip.Route{Destination: header.IPv4EmptySubnet, NIC: nicID}
	}
	return tcpip.Route{Destination: header.IPv6EmptySubnet, NIC: nicID}
}

// Start brings the NIC up: the link starts reading the guest's frames.
func (s *Stack) Start() error {
	if err := s.ns.EnableNIC(nicID); err != nil {
		return fmt.Errorf("enable NIC: %s", err)
	}
	return nil
}

// Netstack returns the underlying gVisor stack, for the packages that
// install transport handlers on it (nat). Callers must not add NICs.
func (s *Stack) Netstack() *stack.Stack { return s.ns }

// NIC returns the ID of the guest-facing NIC.
func (s *Stack) NIC() tcpip.NICID { return nicID }

// Close aborts every endpoint, stops the link and waits for all of the
// stack's goroutines to end. The Stack must not be used afterwards.
func (s *Stack) Close() {
	if s.filter != nil {
		s.filter.stopDeliveries() // see neighborFilter
	}
	s.ns.Destroy()
}
