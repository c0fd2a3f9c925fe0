package nat

import "sync/atomic"

// Stats counts what the NAT refused, dropped or hit a bound on, and what it
// carried. Every bound has a counter here.
type Stats struct {
	// DroppedSpoofed counts packets of new flows whose source was not the
	// guest's address.
	DroppedSpoofed uint64
	// DroppedInvalid counts packets of new flows to addresses the guest
	// may not reach (its own network, loopback, multicast, broadcast).
	DroppedInvalid uint64
	// RefusedGateway counts flows to the gateway's own ports, refused.
	RefusedGateway uint64
	// TCPDialFailed counts TCP connections whose pod-side dial failed.
	TCPDialFailed uint64
	// TCPLimited counts TCP connections refused at the MaxTCP bound.
	TCPLimited uint64
	// TCPPendingLimited counts guest SYNs dropped because their
	// destination address already had its share of dials pending
	// (MaxTCPPending/16); TCPPendingDropped those gVisor's forwarder
	// dropped at the MaxTCPPending bound itself. The guest retransmits
	// both.
	TCPPendingLimited, TCPPendingDropped uint64
	// TCPOpened counts TCP connections proxied.
	TCPOpened uint64
	// UDPLimited counts UDP datagrams dropped at a bound: to a
	// destination beyond a flow's own (1024 addresses).
	UDPLimited uint64
	// UDPOpened and UDPExpired count UDP flows opened and ended idle.
	UDPOpened, UDPExpired uint64
	// UDPEvicted counts UDP flows ended early, least recently used first,
	// to make room for a new flow or destination at the MaxUDPFlows or
	// MaxUDPPeers bound.
	UDPEvicted uint64
	// UDPOpenFailed counts guest datagrams dropped because no pod socket
	// could be opened for their flow (the guest is told "unreachable").
	UDPOpenFailed uint64
	// UDPSendFailed counts guest datagrams the pod socket failed to send.
	UDPSendFailed uint64
	// ICMPLimited, ICMPOpened, ICMPExpired, ICMPEvicted, ICMPOpenFailed
	// and ICMPSendFailed are the same for ICMP echo flows (one per guest
	// echo identifier).
	ICMPLimited, ICMPOpened, ICMPExpired, ICMPEvicted, ICMPOpenFailed, ICMPSendFailed uint64
	// ICMPErrors counts the ICMP errors sent to the guest: relayed from
	// the pod (port unreachable, time exceeded…) or the gateway's own
	// (time exceeded, unreachable).
	ICMPErrors uint64
	// ICMPErrorsLimited counts the ICMP errors not sent to the guest over
	// their rate (1000 a second, 50 at once).
	ICMPErrorsLimited uint64
	// MemoryReleased counts the times masq returned freed memory to the
	// operating system after idle flows ended in bulk.
	MemoryReleased uint64
}

// counters is Stats kept with atomics.
type counters struct {
	droppedSpoofed, droppedInvalid, refusedGateway          atomic.Uint64
	tcpDialFailed, tcpLimited, tcpOpened, tcpPendingLimited atomic.Uint64
	udpLimited, udpOpened, udpExpired, udpSendFailed        atomic.Uint64
	udpEvicted, udpOpenFailed                               atomic.Uint64
	icmpLimited, icmpOpened, icmpExpired, icmpSendFailed    atomic.Uint64
	icmpEvicted, icmpOpenFailed, memoryReleased             atomic.Uint64
	icmpErrors, icmpErrorsLimited                           atomic.Uint64
}

// Stats returns a snapshot of the counters.
func (n *NAT) Stats() Stats {
	c := n.stats
	return Stats{
		DroppedSpoofed:    c.droppedSpoofed.Load(),
		DroppedInvalid:    c.droppedInvalid.Load(),
		RefusedGateway:    c.refusedGateway.Load(),
		TCPDialFailed:     c.tcpDialFailed.Load(),
		TCPLimited:        c.tcpLimited.Load(),
		TCPPendingLimited: c.tcpPendingLimited.Load(),
		TCPPendingDropped: n.fwdDrops.Value(),
		TCPOpened:         c.tcpOpened.Load(),
		UDPLimited:        c.udpLimited.Load(),
		UDPOpened:         c.udpOpened.Load(),
		UDPExpired:        c.udpExpired.Load(),
		UDPSendFailed:     c.udpSendFailed.Load(),
		ICMPLimited:       c.icmpLimited.Load(),
		ICMPOpened:        c.icmpOpened.Load(),
		ICMPExpired:       c.icmpExpired.Load(),
		ICMPSendFailed:    c.icmpSendFailed.Load(),
		UDPEvicted:        c.udpEvicted.Load(),
		UDPOpenFailed:     c.udpOpenFailed.Load(),
		ICMPEvicted:       c.icmpEvicted.Load(),
		ICMPOpenFailed:    c.icmpOpenFailed.Load(),
		MemoryReleased:    c.memoryReleased.Load(),
		ICMPErrors:        c.icmpErrors.Load(),
		ICMPErrorsLimited: c.icmpErrorsLimited.Load(),
	}
}

// count records a policy drop or refusal; it returns a for chaining.
func (c *counters) count(a Action) Action {
	switch a {
	case DropSpoofed:
		c.droppedSpoofed.Add(1)
	case DropInvalid:
		c.droppedInvalid.Add(1)
	case Refuse:
		c.refusedGateway.Add(1)
	}
	return a
}
