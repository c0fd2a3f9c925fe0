package nat

import (
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip/header"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/masqnet/masq/stack"
)

// udpProto proxies UDP: a pod UDP socket per flow, bound to the guest's
// source port when it is free.
type udpProto struct{}

func (udpProto) listen(pod Pod, dst netip.Addr, port uint16) (UDPConn, error) {
	return pod.ListenUDP(dst, port)
}

func (udpProto) echo() bool { return false }

func (udpProto) reply(s *stack.Sender, src, dst netip.AddrPort, payload []byte) error {
	return s.WriteUDP(src.Port(), dst.Port(), payload)
}

// handleUDP sees every UDP packet no endpoint of the stack claimed. It
// runs inline on the packet path and never blocks. Returning false makes
// gVisor answer ICMP port unreachable.
func (n *NAT) handleUDP(id gstack.TransportEndpointID, pkt *gstack.PacketBuffer) bool {
	src, dst := endpoints(id)
	payload, ok := udpPayload(id, pkt)
	if !ok {
		return true
	}
	if n.cfg.InboundReply != nil && n.cfg.InboundReply(src, dst, payload) {
		return true // the guest's answer to an inbound flow
	}
	d := n.cfg.Policy.Outbound(src, dst)
	switch n.stats.count(d.Action) {
	case DropSpoofed, DropInvalid:
		return true
	case Refuse:
		return false
	}
	var qb [maxQuote]byte
	quote := quoteOf(qb[:0], pkt.NetworkHeader().Slice(), pkt.TransportHeader().Slice())
	ttl := guestTTL(pkt.NetworkHeader().Slice())
	if ttl <= 1 {
		n.errs.timeExceeded(src.Addr(), quote)
		return true
	}
	if !n.udp.forward(src, dst, d, payload, quote, ttl) {
		// The pod has no route (or no socket) for it: the guest's socket
		// fails with "network unreachable" at once, as behind a router
		// without a route.
		n.errs.netUnreachable(src.Addr(), quote)
	}
	return true
}

// udpPayload validates the UDP header of pkt and returns its payload,
// contiguous (normally without a copy: a frame arrives in one view).
func udpPayload(id gstack.TransportEndpointID, pkt *gstack.PacketBuffer) ([]byte, bool) {
	h := header.UDP(pkt.TransportHeader().Slice())
	if len(h) < header.UDPMinimumSize {
		return nil, false
	}
	size := pkt.Data().Size()
	length := int(h.Length()) - header.UDPMinimumSize
	if length < 0 || length > size {
		return nil, false
	}
	// Checked unless the link vouches for it (a tap with offloads hands
	// over partial checksums); optional in IPv4.
	if !pkt.RXChecksumValidated && (h.Checksum() != 0 || id.LocalAddress.BitLen() == 128) {
		if !h.IsChecksumValid(id.RemoteAddress, id.LocalAddress, pkt.Data().Checksum()) {
			return nil, false
		}
	}
	b, ok := pkt.Data().PullUp(size)
	if !ok {
		return nil, false
	}
	return b[:length], true
}
