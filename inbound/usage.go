package inbound

import (
	"slices"

	"github.com/masqnet/masq/ports"
)

// UDPFlows returns the inbound UDP flows open and their bound
// (MaxUDPFlows), for the control endpoint.
func (f *Forwarder) UDPFlows() (open, max int) {
	f.udp.mu.Lock()
	defer f.udp.mu.Unlock()
	return len(f.udp.flows), f.cfg.MaxUDPFlows
}

// Forwarded returns the ports with a pod socket bound: what clients can
// reach.
func (f *Forwarder) Forwarded() ports.Set {
	f.mu.Lock()
	ranges := make([]ports.Range, 0, len(f.socks))
	for _, s := range f.socks {
		ranges = append(ranges, ports.Range{Proto: s.proto, First: s.port, Last: s.port})
	}
	f.mu.Unlock()
	ranges = slices.CompactFunc(ranges, func(a, b ports.Range) bool { return a == b })
	set, err := ports.New(ranges...)
	if err != nil {
		return ports.Set{} // a bound socket's port is always valid
	}
	return set
}
