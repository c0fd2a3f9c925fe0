package nat

import (
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// addrOf converts a gVisor address to netip.
func addrOf(a tcpip.Address) netip.Addr {
	if a.BitLen() == 32 {
		return netip.AddrFrom4(a.As4())
	}
	return netip.AddrFrom16(a.As16())
}

// endpoints returns a flow's guest side (source) and destination from the
// stack's view, in which the guest is the remote end.
func endpoints(id gstack.TransportEndpointID) (src, dst netip.AddrPort) {
	src = netip.AddrPortFrom(addrOf(id.RemoteAddress), id.RemotePort)
	dst = netip.AddrPortFrom(addrOf(id.LocalAddress), id.LocalPort)
	return src, dst
}
