package stack

import (
	"fmt"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// ListenUDP opens a UDP socket on the guest NIC bound to local (an
// unspecified address binds every address of its family) with broadcast
// sending allowed, as a DHCP server needs. The caller closes the returned
// conn; Close of the Stack also aborts it.
func (s *Stack) ListenUDP(local netip.AddrPort) (*gonet.UDPConn, error) {
	var wq waiter.Queue
	ep, terr := s.ns.NewEndpoint(udp.ProtocolNumber, protocolOf(local.Addr()), &wq)
	if terr != nil {
		return nil, fmt.Errorf("udp endpoint for %s: %s", local, terr)
	}
	ep.SocketOptions().SetBroadcast(true)
	if terr := ep.Bind(FullAddress(local)); terr != nil {
		ep.Close()
		return nil, fmt.Errorf("bind udp %s: %s", local, terr)
	}
	return gonet.NewUDPConn(&wq, ep), nil
}
