package nat

import (
	"net/netip"
	"time"
)

// ExpireUDP runs one sweep of the expiry loop at now; tests drive the
// clock.
func (n *NAT) ExpireUDP(now time.Time) int { return n.sweep(now) }

// UDPFlows returns the number of open UDP flows.
func (n *NAT) UDPFlows() int { return n.udp.len() }

// ForwardUDP hands the UDP table a guest datagram from src to dst as the
// packet path does after parsing it (policy, then the table), so tests can
// drive millions of datagrams through the table without the guest's stack.
func (n *NAT) ForwardUDP(src, dst netip.AddrPort, payload []byte) bool {
	d := n.cfg.Policy.Outbound(src, dst)
	if n.stats.count(d.Action) != Forward {
		return false
	}
	return n.udp.forward(src, dst, d, payload, nil, 0)
}

// HasUDPFlow reports whether the guest's src has an IPv4 UDP flow.
func (n *NAT) HasUDPFlow(src netip.AddrPort) bool {
	n.udp.mu.Lock()
	defer n.udp.mu.Unlock()
	return n.udp.flows[flowKey{src: src, pod4: true}] != nil
}

// UDPPeers returns the destination entries the UDP flows hold.
func (n *NAT) UDPPeers() int { return int(n.udp.env.peers.Load()) }

// FlowGoroutines returns the flows whose goroutines have not ended yet.
func (n *NAT) FlowGoroutines() int {
	return n.reg.Len()
}

// SYNQuotes returns the number of SYN quotes kept.
func (n *NAT) SYNQuotes() int { return n.syns.len() }
