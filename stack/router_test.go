package stack_test

import (
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/masqnet/masq/internal/memguest"
	"github.com/masqnet/masq/stack"
)

// rsFrame is a guest's Router Solicitation from src to ff02::2 with the
// given hop limit, as an Ethernet frame.
func rsFrame(src netip.Addr, hopLimit uint8) []byte {
	const icmpLen = header.ICMPv6MinimumSize + header.NDPRSMinimumSize
	frame := make([]byte, header.EthernetMinimumSize+header.IPv6MinimumSize+icmpLen)
	header.Ethernet(frame).Encode(&header.EthernetFields{
		SrcAddr: "\x02\x00\x00\x00\x00\x01", DstAddr: "\x33\x33\x00\x00\x00\x02", Type: header.IPv6ProtocolNumber})
	dst := memguest.Addr(netip.MustParseAddr("ff02::2"))
	ip := header.IPv6(frame[header.EthernetMinimumSize:])
	ip.Encode(&header.IPv6Fields{PayloadLength: icmpLen, TransportProtocol: header.ICMPv6ProtocolNumber,
		HopLimit: hopLimit, SrcAddr: memguest.Addr(src), DstAddr: dst})
	icmp := header.ICMPv6(ip.Payload())
	icmp.SetType(header.ICMPv6RouterSolicit)
	icmp.SetChecksum(header.ICMPv6Checksum(header.ICMPv6ChecksumParams{Header: icmp, Src: memguest.Addr(src), Dst: dst}))
	return frame
}

func TestRouterSolicitReported(t *testing.T) {
	s, g := newPair(t, stack.Config{MTU: 1500, IPv4: gw4, IPv6: gw6})
	got := make(chan struct{}, 10)
	s.OnRouterSolicit(func() { got <- struct{}{} })
	if err := g.WriteFrame(rsFrame(netip.MustParseAddr("fe80::1"), 1), 0); err != nil {
		t.Fatal(err)
	}
	if err := g.WriteFrame(rsFrame(netip.MustParseAddr("fe80::1"), 255), 0); err != nil {
		t.Fatal(err)
	}
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("no solicitation reported")
	}
	select {
	case <-got:
		t.Fatal("a solicitation with hop limit 1 was reported")
	case <-time.After(100 * time.Millisecond):
	}
}

func TestLinkLocalIsGVisors(t *testing.T) {
	s, _ := newPair(t, stack.Config{MTU: 1500, IPv4: gw4, IPv6: gw6})
	if want := netip.MustParseAddr("fe80::ff:fe00:0"); s.LinkLocal() != want {
		t.Errorf("LinkLocal %v, want %v", s.LinkLocal(), want)
	}
	addrs := s.Netstack().AllAddresses()[s.NIC()]
	found := false
	for _, a := range addrs {
		found = found || a.AddressWithPrefix.Address == memguest.Addr(s.LinkLocal())
	}
	if !found {
		t.Errorf("stack addresses %v lack %v", addrs, s.LinkLocal())
	}
	snd, err := s.NewSender(s.LinkLocal(), stack.AllNodes)
	if err != nil {
		t.Fatal(err)
	}
	defer snd.Close()
	if err := snd.WriteICMPHopLimit([]byte{134, 0, 0, 0, 64, 0xc0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 255); err != nil {
		t.Fatal(err)
	}
	if err := s.JoinGroup(netip.MustParseAddr("ff02::1:2")); err != nil {
		t.Fatal(err)
	}
}
