package nat

import (
	"encoding/binary"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip/header"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/masqnet/masq/stack"
)

// icmpProto proxies ICMP echo: a pod ping socket per guest echo
// identifier. The pod's kernel picks its own identifier; replies get the
// guest's back.
type icmpProto struct{}

func (icmpProto) listen(pod Pod, dst netip.Addr, _ uint16) (UDPConn, error) {
	return pod.ListenPing(dst)
}

func (icmpProto) echo() bool { return true }

// reply writes an echo reply read from a ping socket to the guest with
// the guest's identifier (dst's port).
func (icmpProto) reply(s *stack.Sender, _, dst netip.AddrPort, msg []byte) error {
	if len(msg) < header.ICMPv4MinimumSize {
		return nil
	}
	binary.BigEndian.PutUint16(msg[4:6], dst.Port()) // the identifier, in v4 and v6 alike
	return s.WriteICMP(msg)
}

// handleICMP sees the ICMP packets the stack delivers to transport: echo
// requests to any address among them. An echo request to the world is
// sent from the pod and its real reply returned; one to the gateway is
// left to the stack (false), which answers it. Nothing else is touched.
func (n *NAT) handleICMP(id gstack.TransportEndpointID, pkt *gstack.PacketBuffer) bool {
	hdr := pkt.TransportHeader().Slice()
	if len(hdr) < header.ICMPv4MinimumSize || !isEchoRequest(hdr[0], id.LocalAddress.BitLen() == 32) {
		return false
	}
	src, dst := endpoints(id)
	d := n.cfg.Policy.Outbound(netip.AddrPortFrom(src.Addr(), 0), netip.AddrPortFrom(dst.Addr(), 0))
	if n.cfg.Policy.isGateway(dst.Addr()) {
		return false // the stack answers the gateway's own echo requests
	}
	if n.stats.count(d.Action) != Forward || !n.pingOK(dst.Addr()) {
		return true // dropped: no reply is ever faked
	}
	var qb [maxQuote]byte
	quote := quoteOf(qb[:0], pkt.NetworkHeader().Slice(), hdr)
	ttl := guestTTL(pkt.NetworkHeader().Slice())
	if ttl <= 1 {
		n.errs.timeExceeded(src.Addr(), quote)
		return true
	}
	b := n.bufs.Get()
	defer n.bufs.Put(b)
	m := copy(*b, hdr)
	data, ok := pkt.Data().PullUp(pkt.Data().Size())
	if !ok {
		return true
	}
	m += copy((*b)[m:], data)
	ident := binary.BigEndian.Uint16(hdr[4:6])
	n.icmp.forward(netip.AddrPortFrom(src.Addr(), ident), dst, d, (*b)[:m], quote, ttl)
	return true
}

// isEchoRequest reports whether an ICMP type is an echo request.
func isEchoRequest(typ byte, v4 bool) bool {
	if v4 {
		return header.ICMPv4Type(typ) == header.ICMPv4Echo
	}
	return header.ICMPv6Type(typ) == header.ICMPv6EchoRequest
}
