package nat

import "time"

// ExpireUDP runs one idle sweep at now; tests drive the clock.
func (n *NAT) ExpireUDP(now time.Time) int { return n.expire(now) }

// UDPFlows returns the number of open UDP flows.
func (n *NAT) UDPFlows() int                      { return n.udp.len() }
func OutsideRange(first, last uint16) [][2]uint16 { return outsideRange(first, last) }

// SYNQuotes returns the number of SYN quotes kept.
func (n *NAT) SYNQuotes() int { return n.syns.len() }
