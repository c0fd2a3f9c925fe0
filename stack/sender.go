package stack

import (
	"encoding/binary"
	"fmt"
	"math"
	"net/netip"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

// Sender writes packets to the guest from one source address (any address:
// the NIC spoofs) to one guest address, without a transport endpoint. It
// holds a route, so building one costs more than a packet; flows keep
// theirs. A Sender is safe for concurrent use; Close releases it.
type Sender struct {
	route *stack.Route
}

// NewSender returns a Sender from src to dst, both of one family.
func (s *Stack) NewSender(src, dst netip.Addr) (*Sender, error) {
	r, err := s.ns.FindRoute(nicID, addrFrom(src), addrFrom(dst), protocolOf(dst), false)
	if err != nil {
		return nil, fmt.Errorf("route %s -> %s: %s", src, dst, err)
	}
	return &Sender{route: r}, nil
}

// Close releases the Sender's route.
func (s *Sender) Close() { s.route.Release() }

// WriteUDP sends payload as one UDP datagram from srcPort to dstPort. The
// stack fragments it when it exceeds the guest's MTU (IPv4).
func (s *Sender) WriteUDP(srcPort, dstPort uint16, payload []byte) error {
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{
		ReserveHeaderBytes: header.UDPMinimumSize + int(s.route.MaxHeaderLength()),
		Payload:            buffer.MakeWithData(payload),
	})
	defer pkt.DecRef()
	h := header.UDP(pkt.TransportHeader().Push(header.UDPMinimumSize))
	pkt.TransportProtocolNumber = udp.ProtocolNumber
	length := uint16(pkt.Size())
	h.Encode(&header.UDPFields{SrcPort: srcPort, DstPort: dstPort, Length: length})
	if s.route.RequiresTXTransportChecksum() {
		xsum := h.CalculateChecksum(checksum.Combine(
			header.PseudoHeaderChecksum(udp.ProtocolNumber, s.route.LocalAddress(), s.route.RemoteAddress(), length),
			pkt.Data().Checksum(),
		))
		if xsum != math.MaxUint16 { // zero means "no checksum" (RFC 768)
			xsum = ^xsum
		}
		h.SetChecksum(xsum)
	}
	params := stack.NetworkHeaderParams{Protocol: udp.ProtocolNumber, TTL: s.route.DefaultTTL()}
	if err := s.route.WritePacket(params, pkt); err != nil {
		return fmt.Errorf("write udp to guest: %s", err)
	}
	return nil
}

// WriteICMP sends msg, a whole ICMP message (header and body) of the
// route's family, filling in its checksum.
func (s *Sender) WriteICMP(msg []byte) error {
	return s.WriteICMPHopLimit(msg, s.route.DefaultTTL())
}

// WriteICMPHopLimit is WriteICMP with the given TTL or hop limit: Neighbor
// Discovery messages need 255 (RFC 4861 §6.1).
func (s *Sender) WriteICMPHopLimit(msg []byte, hopLimit uint8) error {
	if len(msg) < 4 {
		return fmt.Errorf("icmp message of %d bytes", len(msg))
	}
	msg[2], msg[3] = 0, 0
	proto := header.ICMPv4ProtocolNumber
	xsum := checksum.Checksum(msg, 0)
	if s.route.NetProto() == header.IPv6ProtocolNumber {
		proto = header.ICMPv6ProtocolNumber
		xsum = checksum.Combine(xsum, header.PseudoHeaderChecksum(proto, s.route.LocalAddress(), s.route.RemoteAddress(), uint16(len(msg))))
	}
	binary.BigEndian.PutUint16(msg[2:4], ^xsum)
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{
		ReserveHeaderBytes: int(s.route.MaxHeaderLength()),
		Payload:            buffer.MakeWithData(msg),
	})
	defer pkt.DecRef()
	pkt.TransportProtocolNumber = proto
	params := stack.NetworkHeaderParams{Protocol: proto, TTL: hopLimit}
	if err := s.route.WritePacket(params, pkt); err != nil {
		return fmt.Errorf("write icmp to guest: %s", err)
	}
	return nil
}
