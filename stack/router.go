package stack

import (
	"fmt"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
)

// AllNodes is ff02::1, where unsolicited Router Advertisements go (RFC
// 4861 §6.2.4).
var AllNodes = netip.MustParseAddr("ff02::1")

// LinkLocal returns the gateway's IPv6 link-local address: the one gVisor
// derives from the gateway MAC by modified EUI-64 (fe80::ff:fe00:0 for
// GatewayMAC), the source of its Router Advertisements.
func (s *Stack) LinkLocal() netip.Addr {
	return netip.AddrFrom16(header.LinkLocalAddr(s.cfg.MAC).As16())
}

// OnRouterSolicit makes fn be called for each Router Solicitation the
// guest sends, on the link's delivery path: fn must not block. Set it
// before Start.
func (s *Stack) OnRouterSolicit(fn func()) {
	s.filter.solicited.Store(&fn)
}

// JoinGroup makes the NIC accept the IPv6 multicast group a (ff02::1:2,
// All_DHCP_Relay_Agents_and_Servers, for the DHCPv6 server).
func (s *Stack) JoinGroup(a netip.Addr) error {
	if !a.Is6() || !a.IsMulticast() {
		return fmt.Errorf("join %v: not an IPv6 multicast group", a)
	}
	if err := s.ns.JoinGroup(ipv6.ProtocolNumber, nicID, addrFrom(a)); err != nil {
		return fmt.Errorf("join %v: %s", a, err)
	}
	return nil
}
