package link

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// testFrame is a frame for the checksum tests: a transport message of
// proto behind an IPv4 or IPv6 header, checksums right.
type testFrame struct {
	v6       bool
	proto    tcpip.TransportProtocolNumber
	hopByHop bool // IPv6: a hop-by-hop options header first
	fragment bool // IPv4: the first fragment of a larger datagram
	noUDPSum bool // IPv4 UDP without a checksum
}

// build returns the frame and the offset of its transport message.
func (f testFrame) build() ([]byte, int) {
	src, dst := netip.MustParseAddr("10.0.2.2"), netip.MustParseAddr("198.18.0.1")
	if f.v6 {
		src, dst = netip.MustParseAddr("fd10:0:2::2"), netip.MustParseAddr("2001:db8::1")
	}
	msg := make([]byte, 8+20+33) // room for TCP's header and an odd payload
	for i := range msg {
		msg[i] = byte(i * 7)
	}
	switch f.proto {
	case header.TCPProtocolNumber:
		header.TCP(msg).Encode(&header.TCPFields{SrcPort: 1000, DstPort: 80, DataOffset: 20, Flags: header.TCPFlagSyn, WindowSize: 1000})
	case header.UDPProtocolNumber:
		header.UDP(msg).Encode(&header.UDPFields{SrcPort: 1000, DstPort: 53, Length: uint16(len(msg))})
	default:
		msg[0], msg[1] = 8, 0 // echo request (either family's type is fine here)
	}
	sum := 0xffff &^ checksum.Checksum(zeroChecksum(f.proto, msg), pseudo(f, src, dst, len(msg)))
	if f.proto == header.UDPProtocolNumber && f.noUDPSum {
		sum = 0
	}
	binary.BigEndian.PutUint16(msg[checksumOffset(f.proto):], sum)

	eth := make([]byte, header.EthernetMinimumSize)
	if !f.v6 {
		ip := make([]byte, header.IPv4MinimumSize)
		fields := &header.IPv4Fields{TotalLength: uint16(len(ip) + len(msg)), TTL: 64, Protocol: uint8(f.proto),
			SrcAddr: tcpip.AddrFrom4(src.As4()), DstAddr: tcpip.AddrFrom4(dst.As4())}
		if f.fragment {
			fields.Flags = header.IPv4FlagMoreFragments
		}
		header.IPv4(ip).Encode(fields)
		header.IPv4(ip).SetChecksum(^header.IPv4(ip).CalculateChecksum())
		header.Ethernet(eth).Encode(&header.EthernetFields{Type: header.IPv4ProtocolNumber})
		return append(append(eth, ip...), msg...), len(eth) + len(ip)
	}
	var ext []byte
	next := uint8(f.proto)
	if f.hopByHop {
		ext = []byte{next, 0, 1, 4, 0, 0, 0, 0} // PadN: 8 bytes in all
		next = ipv6HopByHop
	}
	ip := make([]byte, header.IPv6MinimumSize)
	header.IPv6(ip).Encode(&header.IPv6Fields{PayloadLength: uint16(len(ext) + len(msg)), TransportProtocol: tcpip.TransportProtocolNumber(next),
		HopLimit: 64, SrcAddr: tcpip.AddrFrom16(src.As16()), DstAddr: tcpip.AddrFrom16(dst.As16())})
	header.Ethernet(eth).Encode(&header.EthernetFields{Type: header.IPv6ProtocolNumber})
	return append(append(append(eth, ip...), ext...), msg...), len(eth) + len(ip) + len(ext)
}

func checksumOffset(proto tcpip.TransportProtocolNumber) int {
	switch proto {
	case header.TCPProtocolNumber:
		return 16
	case header.UDPProtocolNumber:
		return 6
	}
	return 2
}

func zeroChecksum(proto tcpip.TransportProtocolNumber, msg []byte) []byte {
	at := checksumOffset(proto)
	msg[at], msg[at+1] = 0, 0
	return msg
}

func pseudo(f testFrame, src, dst netip.Addr, n int) uint16 {
	if f.proto == header.ICMPv4ProtocolNumber {
		return 0
	}
	if f.v6 {
		return header.PseudoHeaderChecksum(f.proto, tcpip.AddrFrom16(src.As16()), tcpip.AddrFrom16(dst.As16()), uint16(n))
	}
	return header.PseudoHeaderChecksum(f.proto, tcpip.AddrFrom4(src.As4()), tcpip.AddrFrom4(dst.As4()), uint16(n))
}

func TestCheckFrame(t *testing.T) {
	tests := []struct {
		name string
		f    testFrame
		// corruptedValid is what a frame with a flipped payload byte
		// gives: true where nothing can tell.
		corruptedValid bool
	}{
		{name: "tcp4", f: testFrame{proto: header.TCPProtocolNumber}},
		{name: "udp4", f: testFrame{proto: header.UDPProtocolNumber}},
		{name: "udp4 without checksum", f: testFrame{proto: header.UDPProtocolNumber, noUDPSum: true}, corruptedValid: true},
		{name: "icmp4", f: testFrame{proto: header.ICMPv4ProtocolNumber}},
		{name: "ipv4 fragment", f: testFrame{proto: header.UDPProtocolNumber, fragment: true}, corruptedValid: true},
		{name: "tcp6", f: testFrame{v6: true, proto: header.TCPProtocolNumber}},
		{name: "udp6", f: testFrame{v6: true, proto: header.UDPProtocolNumber}},
		{name: "icmp6", f: testFrame{v6: true, proto: header.ICMPv6ProtocolNumber}},
		{name: "tcp6 after hop-by-hop options", f: testFrame{v6: true, proto: header.TCPProtocolNumber, hopByHop: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			frame, at := tt.f.build()
			// A fragment's transport checksum is the stack's to verify,
			// after reassembly.
			if ok, verified := checkFrame(frame); !ok || verified == tt.f.fragment {
				t.Fatalf("right checksums: ok=%v verified=%v, want ok and verified=%v", ok, verified, !tt.f.fragment)
			}
			frame[len(frame)-1] ^= 0x40
			if got, _ := checkFrame(frame); got != tt.corruptedValid {
				t.Errorf("corrupted payload: valid = %v, want %v", got, tt.corruptedValid)
			}
			frame[len(frame)-1] ^= 0x40
			frame[at+checksumOffset(tt.f.proto)] ^= 1
			// A flipped checksum bit is caught even where no checksum
			// was sent (it now claims one), but not in a fragment.
			if got, _ := checkFrame(frame); got != tt.f.fragment {
				t.Errorf("corrupted checksum field: valid = %v, want %v", got, tt.f.fragment)
			}
		})
	}
}

func TestCheckFrameIPv4Header(t *testing.T) {
	frame, _ := testFrame{proto: header.TCPProtocolNumber}.build()
	frame[header.EthernetMinimumSize+8] ^= 1 // the TTL
	if ok, _ := checkFrame(frame); ok {
		t.Fatal("a corrupted IPv4 header passed")
	}
}

func TestCheckFramePassesWhatItCannotParse(t *testing.T) {
	tcp4, _ := testFrame{proto: header.TCPProtocolNumber}.build()
	tcp6, _ := testFrame{v6: true, proto: header.TCPProtocolNumber}.build()
	for name, frame := range map[string][]byte{
		"short ethernet":        tcp4[:10],
		"truncated ipv4 header": tcp4[:header.EthernetMinimumSize+12],
		"ipv4 claiming more":    tcp4[:len(tcp4)-5],
		"truncated ipv6 header": tcp6[:header.EthernetMinimumSize+30],
		"ipv6 claiming more":    tcp6[:len(tcp6)-5],
		"arp":                   append(make([]byte, 12), 0x08, 0x06, 1, 2, 3),
	} {
		if ok, verified := checkFrame(frame); !ok || verified {
			t.Errorf("%s: ok=%v verified=%v; want it passed to the stack unverified, to drop or check", name, ok, verified)
		}
	}
}
