package nat

import "github.com/masqnet/masq/flowtable"

// Usage is how full the NAT's bounds are, for the control endpoint.
type Usage struct {
	// UDPFlows and ICMPFlows are the datagram flows open, each bounded
	// by MaxUDPFlows; UDPPeers and ICMPPeers their destination entries,
	// each bounded by MaxUDPPeers.
	UDPFlows, ICMPFlows, MaxUDPFlows int
	UDPPeers, ICMPPeers, MaxUDPPeers int
	// TCP is the TCP connections dialled or established (outbound and
	// inbound: the bound is shared), of MaxTCP.
	TCP, MaxTCP int
}

// Usage returns how full the NAT's bounds are.
func (n *NAT) Usage() Usage {
	return Usage{
		UDPFlows: n.udp.len(), ICMPFlows: n.icmp.len(), MaxUDPFlows: n.cfg.MaxUDPFlows,
		UDPPeers: int(n.udp.env.peers.Load()), ICMPPeers: int(n.icmp.env.peers.Load()), MaxUDPPeers: n.cfg.MaxUDPPeers,
		TCP: min(n.cfg.TCPLimit.Open(), n.cfg.TCPLimit.Max()), MaxTCP: n.cfg.TCPLimit.Max(),
	}
}

// Flows returns the table the NAT lists its flows in (Config.Flows).
func (n *NAT) Flows() *flowtable.Table { return n.cfg.Flows }
