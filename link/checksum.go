package link

import (
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// The vnet tap link receives TSO segments with partial checksums, which
// the stack must not verify, beside frames whose virtio-net header
// vouches for nothing: neither VIRTIO_NET_HDR_F_NEEDS_CSUM (the guest left
// the checksum to be completed) nor VIRTIO_NET_HDR_F_DATA_VALID (already
// verified). The link checks those here, and tells the stack, frame by
// frame, whether it may skip its own verification (see
// Vnet.Capabilities).

// checkFrame checks the checksums of frame, an Ethernet frame: ok is
// false when an IPv4 header checksum or a TCP, UDP, ICMPv4 or ICMPv6
// checksum is wrong. verified reports that the transport checksum was
// right here, so the stack need not verify again; it is false for what
// this cannot check whole (a fragment, whose transport checksum covers
// the reassembled datagram; an IPv6 header chain it does not walk; a
// malformed packet; ARP), which the stack then verifies itself.
func checkFrame(frame []byte) (ok, verified bool) {
	if len(frame) < header.EthernetMinimumSize {
		return true, false
	}
	b := frame[header.EthernetMinimumSize:]
	switch header.Ethernet(frame).Type() {
	case header.IPv4ProtocolNumber:
		return checkIPv4(b)
	case header.IPv6ProtocolNumber:
		return checkIPv6(b)
	}
	return true, false
}

func checkIPv4(b []byte) (ok, verified bool) {
	h := header.IPv4(b)
	if !h.IsValid(len(b)) {
		return true, false
	}
	if !h.IsChecksumValid() {
		return false, false
	}
	if h.More() || h.FragmentOffset() != 0 {
		return true, false
	}
	return checkTransport(h.TransportProtocol(), h.SourceAddress(), h.DestinationAddress(),
		b[h.HeaderLength():h.TotalLength()])
}

// IPv6 extension headers walked to reach the transport header; any other
// (a fragment header among them) leaves the check to the stack.
const (
	ipv6HopByHop    = 0
	ipv6Routing     = 43
	ipv6DestOptions = 60
)

func checkIPv6(b []byte) (ok, verified bool) {
	if len(b) < header.IPv6MinimumSize {
		return true, false
	}
	h := header.IPv6(b)
	end := header.IPv6MinimumSize + int(h.PayloadLength())
	if end > len(b) {
		return true, false
	}
	next, at := h.NextHeader(), header.IPv6MinimumSize
	for next == ipv6HopByHop || next == ipv6Routing || next == ipv6DestOptions {
		if at+2 > end {
			return true, false
		}
		next, at = b[at], at+(int(b[at+1])+1)*8
	}
	if at > end {
		return true, false
	}
	return checkTransport(tcpip.TransportProtocolNumber(next), h.SourceAddress(), h.DestinationAddress(), b[at:end])
}

// checkTransport checks the checksum of seg, a whole TCP, UDP or ICMP
// message of the given protocol between src and dst.
func checkTransport(proto tcpip.TransportProtocolNumber, src, dst tcpip.Address, seg []byte) (ok, verified bool) {
	switch proto {
	case header.UDPProtocolNumber:
		if len(seg) < header.UDPMinimumSize {
			return true, false
		}
		if src.BitLen() == 32 && header.UDP(seg).Checksum() == 0 {
			return true, true // no checksum: optional in IPv4 (RFC 768)
		}
	case header.TCPProtocolNumber:
		if len(seg) < header.TCPMinimumSize {
			return true, false
		}
	case header.ICMPv4ProtocolNumber:
		ok := checksum.Checksum(seg, 0) == 0xffff // no pseudo-header
		return ok, ok
	case header.ICMPv6ProtocolNumber:
	default:
		return true, false
	}
	pseudo := header.PseudoHeaderChecksum(proto, src, dst, uint16(len(seg)))
	ok = checksum.Checksum(seg, pseudo) == 0xffff
	return ok, ok
}
