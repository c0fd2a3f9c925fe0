package stack

import (
	"net/netip"
	"sync"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/nested"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// neighborFilter keeps the NIC from answering ARP requests and NDP neighbor
// solicitations for addresses other than the gateway's. The NIC spoofs (it
// must, to answer for the world's addresses at layer 3), and gVisor answers
// neighbor queries for every address a spoofing NIC could use, the guest's
// own included: that would fail the guest's duplicate address detection
// (IPv6 DAD, an ARP probe before taking a DHCP lease) and claim its
// neighbours' addresses. The guest only ever needs the gateway resolved.
//
// It is also where delivery stops before the stack is destroyed:
// gVisor's Stack.Wait holds the stack's lock while it waits for the
// link's reader, and a reader delivering a packet inline may be waiting
// for that very lock (a route lookup), so Destroy must never run with a
// delivery in flight.
type neighborFilter struct {
	nested.Endpoint
	gw4, gw6, gwLinkLocal tcpip.Address

	deliveries sync.RWMutex // read-held by each delivery; write-held to stop them
	stopped    bool         // guarded by deliveries

	// solicited, when set, is called (inline, so it must not block) for
	// each valid Router Solicitation: gVisor, not a router, ignores them.
	solicited atomic.Pointer[func()]
}

var _ stack.NetworkDispatcher = (*neighborFilter)(nil)
var _ stack.LinkEndpoint = (*neighborFilter)(nil)

// newNeighborFilter wraps link so that only the given gateway addresses
// (either may be the zero Addr) are resolvable.
func newNeighborFilter(link stack.LinkEndpoint, gw4, gw6 netip.Addr, mac tcpip.LinkAddress) *neighborFilter {
	f := &neighborFilter{gwLinkLocal: header.LinkLocalAddr(mac)}
	if gw4.IsValid() {
		f.gw4 = addrFrom(gw4)
	}
	if gw6.IsValid() {
		f.gw6 = addrFrom(gw6)
	}
	f.Init(link, f)
	return f
}

// DeliverNetworkPacket implements stack.NetworkDispatcher: it drops
// neighbor queries for addresses that are not the gateway's.
func (f *neighborFilter) DeliverNetworkPacket(protocol tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	f.deliveries.RLock()
	defer f.deliveries.RUnlock()
	if f.stopped || f.foreignQuery(protocol, pkt) {
		return
	}
	if fn := f.solicited.Load(); fn != nil && protocol == header.IPv6ProtocolNumber && routerSolicit(pkt) {
		(*fn)()
	}
	f.Endpoint.DeliverNetworkPacket(protocol, pkt)
}

// stopDeliveries waits for the delivery in flight, if any, and drops
// every later frame.
func (f *neighborFilter) stopDeliveries() {
	f.deliveries.Lock()
	f.stopped = true
	f.deliveries.Unlock()
}

// foreignQuery reports whether pkt asks for the link address of an address
// other than the gateway's.
func (f *neighborFilter) foreignQuery(protocol tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) bool {
	switch protocol {
	case header.ARPProtocolNumber:
		b, ok := pkt.Data().PullUp(header.ARPSize)
		if !ok {
			return false // malformed: arp drops it
		}
		arp := header.ARP(b)
		return arp.Op() == header.ARPRequest && tcpip.AddrFrom4Slice(arp.ProtocolAddressTarget()) != f.gw4
	case header.IPv6ProtocolNumber:
		const size = header.IPv6MinimumSize + header.ICMPv6NeighborSolicitMinimumSize
		b, ok := pkt.Data().PullUp(size)
		if !ok {
			return false
		}
		// The fixed header's next header only, as the ICMPv6 offset below
		// assumes: a solicitation behind extension headers is passed on
		// for ipv6 to judge.
		ip := header.IPv6(b)
		if tcpip.TransportProtocolNumber(ip.NextHeader()) != header.ICMPv6ProtocolNumber {
			return false
		}
		// PullUp guaranteed size bytes; the packet's own payload length
		// may claim fewer (a malformed frame is ipv6's to drop).
		icmp := header.ICMPv6(b[header.IPv6MinimumSize:size])
		if icmp.Type() != header.ICMPv6NeighborSolicit {
			return false
		}
		target := header.NDPNeighborSolicit(icmp.MessageBody()).TargetAddress()
		return target != f.gw6 && target != f.gwLinkLocal
	}
	return false
}

// routerSolicit reports whether pkt is a Router Solicitation as RFC 4861
// §6.1.1 accepts one: hop limit 255, code 0, ICMPv6 right after the fixed
// header. Its checksum is not checked: a bad one costs one advertisement.
func routerSolicit(pkt *stack.PacketBuffer) bool {
	const size = header.IPv6MinimumSize + header.ICMPv6MinimumSize
	b, ok := pkt.Data().PullUp(size)
	if !ok {
		return false
	}
	ip := header.IPv6(b)
	if tcpip.TransportProtocolNumber(ip.NextHeader()) != header.ICMPv6ProtocolNumber || ip.HopLimit() != 255 {
		return false
	}
	icmp := header.ICMPv6(b[header.IPv6MinimumSize:])
	return icmp.Type() == header.ICMPv6RouterSolicit && icmp.Code() == 0
}
