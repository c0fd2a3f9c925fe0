package stack

import (
	"encoding/binary"
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

func TestEncodeVnetHdr(t *testing.T) {
	tests := []struct {
		name                       string
		gso                        stack.GSO
		payload                    int
		flags, gsoType             byte
		hdrLen, gsoSize, csumStart uint16
	}{
		{name: "no GSO: all zero", payload: 100},
		{name: "TCPv4 segment larger than MSS", payload: 30000,
			gso:   stack.GSO{Type: stack.GSOTCPv4, NeedsCsum: true, CsumOffset: 16, MSS: 1448, L3HdrLen: 20},
			flags: vnetFlagNeedsCsum, gsoType: vnetGSOTCPv4, hdrLen: 54, gsoSize: 1448, csumStart: 34},
		{name: "TCPv6 segment within MSS: checksum only", payload: 1000,
			gso:   stack.GSO{Type: stack.GSOTCPv6, NeedsCsum: true, CsumOffset: 16, MSS: 1428, L3HdrLen: 40},
			flags: vnetFlagNeedsCsum, gsoType: vnetGSONone, hdrLen: 74, csumStart: 54},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{
				ReserveHeaderBytes: 128,
				Payload:            buffer.MakeWithData(make([]byte, tt.payload)),
			})
			defer pkt.DecRef()
			if tt.gso.Type != stack.GSONone {
				pkt.TransportHeader().Push(header.TCPMinimumSize)
				pkt.NetworkHeader().Push(int(tt.gso.L3HdrLen))
				pkt.LinkHeader().Push(header.EthernetMinimumSize)
			}
			pkt.GSOOptions = tt.gso
			var hdr [vnetHdrSize]byte
			encodeVnetHdr(hdr[:], pkt)
			got := struct {
				flags, gsoType             byte
				hdrLen, gsoSize, csumStart uint16
			}{hdr[0], hdr[1], binary.LittleEndian.Uint16(hdr[2:]), binary.LittleEndian.Uint16(hdr[4:]), binary.LittleEndian.Uint16(hdr[6:])}
			if got.flags != tt.flags || got.gsoType != tt.gsoType || got.hdrLen != tt.hdrLen || got.gsoSize != tt.gsoSize || got.csumStart != tt.csumStart {
				t.Fatalf("header = %+v, want flags %d type %d hdrLen %d gsoSize %d csumStart %d",
					got, tt.flags, tt.gsoType, tt.hdrLen, tt.gsoSize, tt.csumStart)
			}
		})
	}
}
