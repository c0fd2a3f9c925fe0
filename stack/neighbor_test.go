package stack

import (
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// FuzzNeighborFilter feeds guest bytes to the filter's parser: whatever a
// guest sends, it must not panic.
func FuzzNeighborFilter(f *testing.F) {
	f.Add(uint16(header.IPv6ProtocolNumber), nsFrame(netip.MustParseAddr("fd10:0:2::1"), 24))
	f.Add(uint16(header.IPv6ProtocolNumber), nsFrame(netip.MustParseAddr("fd10:0:2::2"), 0)) // payload length 0
	f.Add(uint16(header.ARPProtocolNumber), make([]byte, header.ARPSize))
	filter := &neighborFilter{gw4: tcpip.AddrFrom4([4]byte{10, 0, 2, 1}), gw6: addrFrom(netip.MustParseAddr("fd10:0:2::1"))}
	f.Fuzz(func(t *testing.T, proto uint16, b []byte) {
		pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(b)})
		defer pkt.DecRef()
		filter.foreignQuery(tcpip.NetworkProtocolNumber(proto), pkt)
		routerSolicit(pkt) // the RS test on the same guest bytes
	})
}

func TestNeighborFilterDecides(t *testing.T) {
	filter := &neighborFilter{gw6: addrFrom(netip.MustParseAddr("fd10:0:2::1"))}
	tests := []struct {
		target  string
		plen    uint16
		foreign bool
	}{
		{"fd10:0:2::1", 24, false},
		{"fd10:0:2::2", 24, true},
		{"fd10:0:2::2", 0, true}, // a lying payload length still parses the bytes present
	}
	for _, tt := range tests {
		pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(nsFrame(netip.MustParseAddr(tt.target), tt.plen))})
		got := filter.foreignQuery(header.IPv6ProtocolNumber, pkt)
		pkt.DecRef()
		if got != tt.foreign {
			t.Errorf("NS for %s (payload length %d): foreign = %v, want %v", tt.target, tt.plen, got, tt.foreign)
		}
	}
}

// nsFrame builds an IPv6 neighbor solicitation for target whose header
// claims payload length plen.
func nsFrame(target netip.Addr, plen uint16) []byte {
	b := make([]byte, header.IPv6MinimumSize+header.ICMPv6NeighborSolicitMinimumSize)
	ip := header.IPv6(b)
	ip.Encode(&header.IPv6Fields{PayloadLength: plen, TransportProtocol: header.ICMPv6ProtocolNumber, HopLimit: 255})
	icmp := header.ICMPv6(b[header.IPv6MinimumSize:])
	icmp.SetType(header.ICMPv6NeighborSolicit)
	header.NDPNeighborSolicit(icmp.MessageBody()).SetTargetAddress(addrFrom(target))
	return b
}
