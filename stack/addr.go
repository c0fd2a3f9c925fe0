package stack

import (
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
)

// addrFrom converts a netip address to gVisor's representation.
func addrFrom(a netip.Addr) tcpip.Address {
	if a.Is4() {
		return tcpip.AddrFrom4(a.As4())
	}
	return tcpip.AddrFrom16(a.As16())
}

// FullAddress converts a netip address and port to gVisor's representation
// on the guest NIC.
func FullAddress(ap netip.AddrPort) tcpip.FullAddress {
	fa := tcpip.FullAddress{NIC: nicID, Port: ap.Port()}
	if a := ap.Addr(); a.IsValid() && !a.IsUnspecified() {
		fa.Addr = addrFrom(a.Unmap())
	}
	return fa
}

// protocolOf is the network protocol number of a's family.
func protocolOf(a netip.Addr) tcpip.NetworkProtocolNumber {
	if a.Unmap().Is4() {
		return ipv4.ProtocolNumber
	}
	return ipv6.ProtocolNumber
}
