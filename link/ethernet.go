package link

import (
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// ethernet is what masq's own link endpoints share as Ethernet links:
// embedded, it gives them stack.LinkEndpoint's MTU, link address and
// header methods. Its zero value has MTU 0 and no address.
type ethernet struct {
	mtu  atomic.Uint32
	addr atomic.Pointer[tcpip.LinkAddress]
}

// MTU implements stack.LinkEndpoint.MTU.
func (e *ethernet) MTU() uint32 { return e.mtu.Load() }

// SetMTU implements stack.LinkEndpoint.SetMTU.
func (e *ethernet) SetMTU(mtu uint32) { e.mtu.Store(mtu) }

// LinkAddress implements stack.LinkEndpoint.LinkAddress.
func (e *ethernet) LinkAddress() tcpip.LinkAddress {
	if a := e.addr.Load(); a != nil {
		return *a
	}
	return ""
}

// SetLinkAddress implements stack.LinkEndpoint.SetLinkAddress.
func (e *ethernet) SetLinkAddress(addr tcpip.LinkAddress) { e.addr.Store(&addr) }

// MaxHeaderLength implements stack.LinkEndpoint.MaxHeaderLength.
func (*ethernet) MaxHeaderLength() uint16 { return header.EthernetMinimumSize }

// ARPHardwareType implements stack.LinkEndpoint.ARPHardwareType.
func (*ethernet) ARPHardwareType() header.ARPHardwareType { return header.ARPHardwareEther }

// AddHeader implements stack.LinkEndpoint.AddHeader.
func (*ethernet) AddHeader(pkt *stack.PacketBuffer) {
	eth := header.Ethernet(pkt.LinkHeader().Push(header.EthernetMinimumSize))
	eth.Encode(&header.EthernetFields{
		SrcAddr: pkt.EgressRoute.LocalLinkAddress,
		DstAddr: pkt.EgressRoute.RemoteLinkAddress,
		Type:    pkt.NetworkProtocolNumber,
	})
}

// ParseHeader implements stack.LinkEndpoint.ParseHeader.
func (*ethernet) ParseHeader(pkt *stack.PacketBuffer) bool {
	b, ok := pkt.LinkHeader().Consume(header.EthernetMinimumSize)
	if ok {
		pkt.NetworkProtocolNumber = header.Ethernet(b).Type()
	}
	return ok
}
