package nat_test

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/masqnet/masq/internal/memguest"
	"github.com/masqnet/masq/stack"
)

// udpFragments builds the IPv4 fragments (at most fragSize bytes of
// payload each, a multiple of 8) of one UDP datagram from src to dst, as
// frames from the guest to the gateway's MAC; badSum corrupts its UDP
// checksum.
func udpFragments(src, dst netip.AddrPort, payload []byte, fragSize int, badSum bool) [][]byte {
	s, d := tcpip.AddrFrom4(src.Addr().As4()), tcpip.AddrFrom4(dst.Addr().As4())
	dgram := make([]byte, header.UDPMinimumSize+len(payload))
	copy(dgram[header.UDPMinimumSize:], payload)
	u := header.UDP(dgram)
	u.Encode(&header.UDPFields{SrcPort: src.Port(), DstPort: dst.Port(), Length: uint16(len(dgram))})
	xsum := ^checksum.Checksum(dgram, header.PseudoHeaderChecksum(header.UDPProtocolNumber, s, d, uint16(len(dgram))))
	if badSum {
		xsum ^= 0x0101
	}
	u.SetChecksum(xsum)
	var frames [][]byte
	for off := 0; off < len(dgram); off += fragSize {
		part := dgram[off:min(off+fragSize, len(dgram))]
		b := make([]byte, header.EthernetMinimumSize+header.IPv4MinimumSize+len(part))
		header.Ethernet(b).Encode(&header.EthernetFields{SrcAddr: memguest.MAC, DstAddr: stack.GatewayMAC, Type: header.IPv4ProtocolNumber})
		ip := header.IPv4(b[header.EthernetMinimumSize:])
		fields := &header.IPv4Fields{TotalLength: uint16(header.IPv4MinimumSize + len(part)), ID: 4242, TTL: 64,
			FragmentOffset: uint16(off), Protocol: uint8(header.UDPProtocolNumber), SrcAddr: s, DstAddr: d}
		if off+fragSize < len(dgram) {
			fields.Flags = header.IPv4FlagMoreFragments
		}
		ip.Encode(fields)
		ip.SetChecksum(^ip.CalculateChecksum())
		copy(ip[header.IPv4MinimumSize:], part)
		frames = append(frames, b)
	}
	return frames
}

// TestFragmentedDatagramChecksum sends a UDP datagram in IPv4 fragments
// whose virtio-net headers vouch for nothing: with a right checksum it
// reaches the world whole; with a wrong one it is dropped. The link can
// verify no fragment itself; the stack must, after reassembly.
func TestFragmentedDatagramChecksum(t *testing.T) {
	for _, offload := range []bool{false, true} {
		t.Run(fmt.Sprint("offload=", offload), func(t *testing.T) {
			srv, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			pod := newFakePod()
			dst := netip.AddrPortFrom(world4, 9)
			pod.route(dst, netip.MustParseAddrPort(srv.LocalAddr().String()))
			g, _ := harnessLink(t, 1500, offload, pod, nil)
			src := netip.AddrPortFrom(guest4.Addr(), 40000)
			payload := make([]byte, 2500)
			for i := range payload {
				payload[i] = byte(i)
			}
			// The bad datagram first, then the good one: once the good
			// one arrived, the bad one has been handled.
			sendFrames(t, g, udpFragments(src, dst, append([]byte("bad:"), payload...), 1000, true))
			sendFrames(t, g, udpFragments(src, dst, append([]byte("good"), payload...), 1000, false))
			buf := make([]byte, 4096)
			srv.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, _, err := srv.ReadFromUDP(buf)
			if err != nil {
				t.Fatalf("the good fragmented datagram did not arrive: %v", err)
			}
			if got := string(buf[:4]); got != "good" || n != 4+len(payload) {
				t.Fatalf("first datagram to arrive: %q, %d bytes; want the good one, %d bytes", got, n, 4+len(payload))
			}
			srv.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			if n, _, err := srv.ReadFromUDP(buf); err == nil {
				t.Fatalf("a second datagram (%q, %d bytes) arrived: the bad one", buf[:4], n)
			}
		})
	}
}
