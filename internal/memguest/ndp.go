package memguest

import (
	"net/netip"
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// ndpRecorder records what the guest's IPv6 learned from Router
// Advertisements. It implements ipv6.NDPDispatcher.
type ndpRecorder struct {
	mu      sync.Mutex
	routers []netip.Addr                      // default routers, newest last; guarded by mu
	dhcpv6  ipv6.DHCPv6ConfigurationFromNDPRA // guarded by mu
	dns     []netip.Addr                      // RDNSS; guarded by mu
	search  []string                          // DNSSL; guarded by mu
}

var _ ipv6.NDPDispatcher = (*ndpRecorder)(nil)

// DefaultRouters returns the default routers the guest learned from Router
// Advertisements.
func (g *Guest) DefaultRouters() []netip.Addr {
	g.ndp.mu.Lock()
	defer g.ndp.mu.Unlock()
	return append([]netip.Addr(nil), g.ndp.routers...)
}

// DHCPv6Config returns what the last Router Advertisement said of DHCPv6
// (its Managed and Other flags).
func (g *Guest) DHCPv6Config() ipv6.DHCPv6ConfigurationFromNDPRA {
	g.ndp.mu.Lock()
	defer g.ndp.mu.Unlock()
	return g.ndp.dhcpv6
}

// RADNS returns the DNS servers and search domains Router Advertisements
// gave the guest (RDNSS, DNSSL).
func (g *Guest) RADNS() ([]netip.Addr, []string) {
	g.ndp.mu.Lock()
	defer g.ndp.mu.Unlock()
	return append([]netip.Addr(nil), g.ndp.dns...), append([]string(nil), g.ndp.search...)
}

func (r *ndpRecorder) OnDuplicateAddressDetectionResult(tcpip.NICID, tcpip.Address, stack.DADResult) {
}

func (r *ndpRecorder) OnOffLinkRouteUpdated(_ tcpip.NICID, dst tcpip.Subnet, router tcpip.Address, _ header.NDPRoutePreference) {
	if dst.Prefix() != 0 {
		return // a more specific route, not a default router
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.routers = append(r.routers, netip.AddrFrom16(router.As16()))
}

func (r *ndpRecorder) OnOffLinkRouteInvalidated(tcpip.NICID, tcpip.Subnet, tcpip.Address) {}
func (r *ndpRecorder) OnOnLinkPrefixDiscovered(tcpip.NICID, tcpip.Subnet)                 {}
func (r *ndpRecorder) OnOnLinkPrefixInvalidated(tcpip.NICID, tcpip.Subnet)                {}

func (r *ndpRecorder) OnAutoGenAddress(tcpip.NICID, tcpip.AddressWithPrefix) stack.AddressDispatcher {
	return nil
}

func (r *ndpRecorder) OnAutoGenAddressDeprecated(tcpip.NICID, tcpip.AddressWithPrefix)  {}
func (r *ndpRecorder) OnAutoGenAddressInvalidated(tcpip.NICID, tcpip.AddressWithPrefix) {}

func (r *ndpRecorder) OnRecursiveDNSServerOption(_ tcpip.NICID, addrs []tcpip.Address, _ time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, a := range addrs {
		r.dns = append(r.dns, netip.AddrFrom16(a.As16()))
	}
}

func (r *ndpRecorder) OnDNSSearchListOption(_ tcpip.NICID, domains []string, _ time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.search = append(r.search, domains...)
}

func (r *ndpRecorder) OnDHCPv6Configuration(_ tcpip.NICID, c ipv6.DHCPv6ConfigurationFromNDPRA) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dhcpv6 = c
}
