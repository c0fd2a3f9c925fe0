package stack

import (
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// A link that declares receive checksum offload (the vnet tap link must:
// the guest's TSO segments carry partial checksums, and gVisor's NIC
// applies a link's capabilities to every frame) must itself verify the
// frames whose virtio-net header vouches for nothing: neither
// VIRTIO_NET_HDR_F_NEEDS_CSUM (the guest left the checksum to be
// completed) nor VIRTIO_NET_HDR_F_DATA_VALID (already verified). Those
// are checked here, before the stack sees them.

// checksumsValid reports whether frame, an Ethernet frame, has a right
// IPv4 header checksum and a right TCP, UDP, ICMPv4 or ICMPv6 checksum.
// What it cannot parse it passes on: the stack drops malformed packets
// itself, since it checks lengths whatever the link declares. The
// transport checksum of a fragment covers the whole datagram, which only
// reassembly sees, so fragments are checked up to their IP header.
func checksumsValid(frame []byte) bool {
	if len(frame) < header.EthernetMinimumSize {
		return true
	}
	b := frame[header.EthernetMinimumSize:]
	switch header.Ethernet(frame).Type() {
	case header.IPv4ProtocolNumber:
		return ipv4ChecksumsValid(b)
	case header.IPv6ProtocolNumber:
		return ipv6ChecksumsValid(b)
	}
	return true // ARP and the rest carry no checksum
}

func ipv4ChecksumsValid(b []byte) bool {
	h := header.IPv4(b)
	if !h.IsValid(len(b)) {
		return true
	}
	if !h.IsChecksumValid() {
		return false
	}
	if h.More() || h.FragmentOffset() != 0 {
		return true
	}
	return transportChecksumValid(h.TransportProtocol(), h.SourceAddress(), h.DestinationAddress(),
		b[h.HeaderLength():h.TotalLength()])
}

// IPv6 extension headers walked to reach the transport header; any other
// (a fragment header among them) ends the check.
const (
	ipv6HopByHop    = 0
	ipv6Routing     = 43
	ipv6DestOptions = 60
)

func ipv6ChecksumsValid(b []byte) bool {
	if len(b) < header.IPv6MinimumSize {
		return true
	}
	h := header.IPv6(b)
	end := header.IPv6MinimumSize + int(h.PayloadLength())
	if end > len(b) {
		return true
	}
	next, at := h.NextHeader(), header.IPv6MinimumSize
	for next == ipv6HopByHop || next == ipv6Routing || next == ipv6DestOptions {
		if at+2 > end {
			return true
		}
		next, at = b[at], at+(int(b[at+1])+1)*8
	}
	if at > end {
		return true
	}
	return transportChecksumValid(tcpip.TransportProtocolNumber(next), h.SourceAddress(), h.DestinationAddress(), b[at:end])
}

// transportChecksumValid checks the checksum of seg, a whole TCP, UDP or
// ICMP message of the given protocol between src and dst.
func transportChecksumValid(proto tcpip.TransportProtocolNumber, src, dst tcpip.Address, seg []byte) bool {
	switch proto {
	case header.UDPProtocolNumber:
		if len(seg) < header.UDPMinimumSize {
			return true
		}
		if src.BitLen() == 32 && header.UDP(seg).Checksum() == 0 {
			return true // no checksum: optional in IPv4 (RFC 768)
		}
	case header.TCPProtocolNumber:
		if len(seg) < header.TCPMinimumSize {
			return true
		}
	case header.ICMPv4ProtocolNumber:
		return checksum.Checksum(seg, 0) == 0xffff // no pseudo-header
	case header.ICMPv6ProtocolNumber:
	default:
		return true
	}
	pseudo := header.PseudoHeaderChecksum(proto, src, dst, uint16(len(seg)))
	return checksum.Checksum(seg, pseudo) == 0xffff
}
