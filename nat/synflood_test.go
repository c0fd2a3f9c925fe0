package nat_test

import (
	"errors"
	"fmt"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/masqnet/masq/internal/memguest"
	"github.com/masqnet/masq/internal/testkit"
	"github.com/masqnet/masq/nat"
	"github.com/masqnet/masq/stack"
)

// tcpFrame builds an Ethernet frame from the guest to the gateway's MAC
// carrying a bare TCP segment (IPv4) from src to dst with the given
// flags; badSum corrupts its TCP checksum.
func tcpFrame(src, dst netip.AddrPort, flags header.TCPFlags, badSum bool) []byte {
	const size = header.EthernetMinimumSize + header.IPv4MinimumSize + header.TCPMinimumSize
	b := make([]byte, size)
	header.Ethernet(b).Encode(&header.EthernetFields{SrcAddr: memguest.MAC, DstAddr: stack.GatewayMAC, Type: header.IPv4ProtocolNumber})
	ip := header.IPv4(b[header.EthernetMinimumSize:])
	s, d := tcpip.AddrFrom4(src.Addr().As4()), tcpip.AddrFrom4(dst.Addr().As4())
	ip.Encode(&header.IPv4Fields{TotalLength: header.IPv4MinimumSize + header.TCPMinimumSize, TTL: 64,
		Protocol: uint8(header.TCPProtocolNumber), SrcAddr: s, DstAddr: d})
	ip.SetChecksum(^ip.CalculateChecksum())
	tcp := header.TCP(ip[header.IPv4MinimumSize:])
	tcp.Encode(&header.TCPFields{SrcPort: src.Port(), DstPort: dst.Port(), SeqNum: 1000, DataOffset: header.TCPMinimumSize,
		Flags: flags, WindowSize: 65535})
	xsum := ^checksum.Checksum(tcp, header.PseudoHeaderChecksum(header.TCPProtocolNumber, s, d, header.TCPMinimumSize))
	if badSum {
		xsum ^= 0x0101
	}
	tcp.SetChecksum(xsum)
	return b
}

// sendFrames writes each frame from the guest's side of the link, waiting
// while the link's queue is full; every wait is bounded.
func sendFrames(t *testing.T, g *memguest.Guest, frames [][]byte) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for _, f := range frames {
		for {
			err := g.WriteFrame(f, 0)
			if err == nil {
				break
			}
			if !errors.Is(err, syscall.EAGAIN) || time.Now().After(deadline) {
				t.Fatalf("write frame: %v", err)
			}
			time.Sleep(time.Millisecond)
		}
	}
}

func TestBadChecksumSYNNeverDialled(t *testing.T) {
	for _, offload := range []bool{false, true} {
		t.Run(fmt.Sprint("offload=", offload), func(t *testing.T) {
			pod := newFakePod()
			good := netip.AddrPortFrom(world4, 7)
			pod.route(good, tcpServer(t, echo))
			bad := netip.AddrPortFrom(world4, 8)
			pod.route(bad, tcpServer(t, echo))
			g, _ := harnessLink(t, 1500, offload, pod, nil)
			from := netip.AddrPortFrom(guest4.Addr(), 40000)
			// The bad SYN first: frames are handled in order, so once the
			// good one is dialled the bad one has been seen.
			sendFrames(t, g, [][]byte{
				tcpFrame(from, bad, header.TCPFlagSyn, true),
				tcpFrame(from, good, header.TCPFlagSyn, false),
			})
			testkit.WaitFor(t, func() bool { pod.mu.Lock(); defer pod.mu.Unlock(); return pod.dials >= 1 }, "the good SYN to be dialled")
			time.Sleep(50 * time.Millisecond) // a dial of the bad SYN would have started with the good one's
			pod.mu.Lock()
			defer pod.mu.Unlock()
			if pod.dials != 1 {
				t.Fatalf("pod dials = %d, want 1: a SYN with a wrong checksum was dialled", pod.dials)
			}
		})
	}
}

// TestUnreachableAfterSYNFloods floods masq with SYNs the forwarder
// turns down (SYN|ACKs, wrong checksums, SYNs over its in-flight bound),
// then checks that no SYN quote was left behind and that an unreachable
// destination still gets an ICMP unreachable, not a RST.
func TestUnreachableAfterSYNFloods(t *testing.T) {
	for _, offload := range []bool{false, true} {
		t.Run(fmt.Sprint("offload=", offload), func(t *testing.T) {
			const pending = 8
			pod := newFakePod()
			hole := netip.MustParseAddrPort("198.18.7.7:80")
			pod.hang[hole] = true
			g, n := harnessLink(t, 1500, offload, pod, func(c *nat.Config) {
				c.MaxTCPPending = pending
				c.DialTimeout = time.Second
			})
			var frames [][]byte
			for i := range 3000 {
				from := netip.AddrPortFrom(guest4.Addr(), uint16(10000+i))
				dst := netip.AddrPortFrom(world4, uint16(1+i%1000))
				frames = append(frames, tcpFrame(from, dst, header.TCPFlagSyn|header.TCPFlagAck, false),
					tcpFrame(from, dst, header.TCPFlagSyn, true))
			}
			// pending SYNs to a black hole fill the forwarder; the rest
			// are over its bound.
			for i := range pending + 500 {
				frames = append(frames, tcpFrame(netip.AddrPortFrom(guest4.Addr(), uint16(20000+i)), hole, header.TCPFlagSyn, false))
			}
			sendFrames(t, g, frames)
			testkit.WaitFor(t, func() bool { return n.Stats().TCPDialFailed >= pending }, "the black-holed dials to fail")
			if q := n.SYNQuotes(); q != 0 {
				t.Errorf("%d SYN quotes left after the flood, want 0", q)
			}
			icmp := func() uint64 { return g.Stack.Stats().ICMP.V4.PacketsReceived.DstUnreachable.Value() }
			before := icmp()
			_, err := dial(g, netip.MustParseAddrPort("198.18.5.5:80"), 3*time.Second)
			if err == nil || isRefused(err) || icmp() == before {
				t.Fatalf("dial to an unreachable host after the flood: %v, %d ICMP unreachables; want an ICMP unreachable", err, icmp()-before)
			}
		})
	}
}

// TestSYNFloodToOneAddressLeavesRoom floods SYNs to one address that
// never answers (each dial waits out the dial timeout): it may hold only
// its share of the forwarder's in-flight bound, so a connection to
// another server still goes through at once, and the SYNs over the share
// are counted.
func TestSYNFloodToOneAddressLeavesRoom(t *testing.T) {
	const pending = 64 // a share of 16 per destination
	pod := newFakePod()
	hole := netip.MustParseAddrPort("198.18.7.7:80")
	pod.hang[hole] = true
	good := netip.AddrPortFrom(world4, 7)
	pod.route(good, tcpServer(t, echo))
	g, n := harnessLink(t, 1500, true, pod, func(c *nat.Config) {
		c.MaxTCPPending = pending
		c.DialTimeout = 5 * time.Second
	})
	var frames [][]byte
	for i := range 2 * pending {
		frames = append(frames, tcpFrame(netip.AddrPortFrom(guest4.Addr(), uint16(20000+i)), hole, header.TCPFlagSyn, false))
	}
	sendFrames(t, g, frames)
	testkit.WaitFor(t, func() bool { return n.Stats().TCPPendingLimited > 0 }, "SYNs over the destination's share to be counted")
	c, err := dial(g, good, 2*time.Second)
	if err != nil {
		t.Fatalf("connect while one address holds its share of pending dials: %v", err)
	}
	c.Close()
	s := n.Stats()
	if s.TCPPendingLimited != 2*pending-16 || s.TCPPendingDropped != 0 {
		t.Errorf("TCPPendingLimited = %d, TCPPendingDropped = %d; want %d and 0", s.TCPPendingLimited, s.TCPPendingDropped, 2*pending-16)
	}
}
