package nat

import (
	"net/netip"
	"time"
)

// Action is what the policy decides for a new guest flow.
type Action uint8

// The actions, in the order Policy.Outbound considers them.
const (
	// Forward proxies the flow to Decision.Dst through a pod socket.
	Forward Action = iota + 1
	// DropSpoofed silently drops a flow whose source is not the guest's.
	DropSpoofed
	// DropInvalid silently drops a flow to an address the guest has no
	// business reaching through masq: its own network (other than the
	// gateway), loopback, multicast, broadcast, unspecified.
	DropInvalid
	// Refuse answers at once that nothing listens: a TCP RST, an ICMP port
	// unreachable for UDP.
	Refuse
)

// String names the action for logs and tests.
func (a Action) String() string {
	switch a {
	case Forward:
		return "forward"
	case DropSpoofed:
		return "drop-spoofed"
	case DropInvalid:
		return "drop-invalid"
	case Refuse:
		return "refuse"
	}
	return "unknown"
}

// Decision is the policy's answer for one flow.
type Decision struct {
	Action Action
	// Dst is where a Forward goes from the pod: the guest's destination,
	// or its mapping (the pod's loopback for the gateway, the pod's
	// resolver for gateway:53).
	Dst netip.AddrPort
}

// Policy says who may talk to whom. It is plain data, built once; its
// methods are pure and safe for concurrent use.
type Policy struct {
	// Guest4 and Guest6 are the guest's addresses, the only sources it may
	// use. Guest6 may be the zero Addr when IPv6 is off.
	Guest4, Guest6 netip.Addr

	// Net4 and Net6 are the guest networks; Net4.Addr().Next() and
	// Net6.Addr().Next() are the gateway.
	Net4, Net6 netip.Prefix

	// AllowGatewayToPod maps a connection to the gateway's own address
	// (on a port masq does not serve) to the same port on the pod's
	// loopback. Off, such connections are refused.
	AllowGatewayToPod bool

	// DNS, when valid, is the pod's resolver that gateway:53 (UDP and TCP)
	// is forwarded to: set when the pod's only resolvers are on loopback
	// and the guest was given the gateway as its DNS server.
	DNS netip.AddrPort
}

// DNSPort is where resolvers listen (RFC 1035 §4.2): gateway:53 leads to
// the pod's resolver, and flows to it idle out sooner.
const DNSPort = 53

// Outbound decides what becomes of a new flow from src to dst that the
// guest started. The same rules hold for TCP and UDP.
func (p *Policy) Outbound(src, dst netip.AddrPort) Decision {
	s, d := src.Addr().Unmap(), dst.Addr().Unmap()
	switch {
	case !p.isGuest(s):
		return Decision{Action: DropSpoofed}
	case p.isGateway(d):
		return p.toGateway(d, dst.Port())
	case !routable(d) || p.Net4.Contains(d) || p.Net6.Contains(d):
		return Decision{Action: DropInvalid}
	}
	return Decision{Action: Forward, Dst: netip.AddrPortFrom(d, dst.Port())}
}

// isGuest reports whether a is one of the guest's addresses.
func (p *Policy) isGuest(a netip.Addr) bool {
	return a.IsValid() && (a == p.Guest4 || a == p.Guest6)
}

// isGateway reports whether a is the gateway's address of its family:
// the stack itself answers there (ARP, NDP, echo requests), and TCP and
// UDP to it take toGateway's mappings.
func (p *Policy) isGateway(a netip.Addr) bool {
	return a.IsValid() && a == p.gateway(a)
}

// gateway returns the gateway address of a's family (the zero Addr when
// that family is off).
func (p *Policy) gateway(a netip.Addr) netip.Addr {
	n := p.Net6
	if a.Is4() {
		n = p.Net4
	}
	if !n.IsValid() {
		return netip.Addr{}
	}
	return n.Addr().Next()
}

// toGateway decides a flow to the gateway's own address gw on port.
func (p *Policy) toGateway(gw netip.Addr, port uint16) Decision {
	switch {
	case port == DNSPort && p.DNS.IsValid():
		return Decision{Action: Forward, Dst: p.DNS}
	case p.AllowGatewayToPod:
		return Decision{Action: Forward, Dst: netip.AddrPortFrom(loopbackOf(gw.Is4()), port)}
	}
	return Decision{Action: Refuse}
}

// routable reports whether a can be a destination on the pod's network.
func routable(a netip.Addr) bool {
	return a.IsValid() && !a.IsUnspecified() && !a.IsLoopback() && !a.IsMulticast() &&
		a != netip.AddrFrom4([4]byte{255, 255, 255, 255})
}

// loopbackOf is the pod's loopback address of v4's family.
func loopbackOf(v4 bool) netip.Addr {
	if v4 {
		return netip.AddrFrom4([4]byte{127, 0, 0, 1})
	}
	return netip.IPv6Loopback()
}

// idleTimeouts are the idle timeouts of datagram flows.
type idleTimeouts struct {
	udp   time.Duration // a UDP flow's
	short time.Duration // a DNS or ICMP echo flow's
}

// idle returns how long a datagram flow toward dst may stay idle: an
// echo flow (ICMP) or a DNS one is one request and one answer, and
// resolvers use a fresh source port per query, so those end sooner; other
// UDP flows live as long as conntrack keeps an assured stream.
func (t idleTimeouts) idle(echo bool, dst netip.AddrPort) time.Duration {
	if echo || dst.Port() == DNSPort {
		return t.short
	}
	return t.udp
}
