package inbound_test

import (
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"

	"github.com/masqnet/masq/flowtable"
	"github.com/masqnet/masq/inbound"
	"github.com/masqnet/masq/internal/memguest"
	"github.com/masqnet/masq/internal/testkit"
	"github.com/masqnet/masq/ports"
)

// flowsHarness forwards spec with the flows counted in a table of the
// test's.
func flowsHarness(t *testing.T, spec string, mod func(*inbound.Config)) (*memguest.Guest, *flowtable.Table) {
	t.Helper()
	table := flowtable.New(nil)
	g, _ := harness(t, newFakePod(), false, func(c *inbound.Config) {
		set, err := ports.Parse(spec)
		if err != nil {
			t.Fatal(err)
		}
		c.Ports, c.Flows = &set, table
		if mod != nil {
			mod(c)
		}
	})
	return g, table
}

// waitFlows polls table until it lists n flows, for at most 5 s.
func waitFlows(t *testing.T, table *flowtable.Table, n int) []flowtable.Info {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		f := table.Flows(flowtable.Filter{})
		if len(f) == n {
			return f
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d flows after 5s, want %d: %+v", len(f), n, f)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestInboundTCPFlowListedAndCounted(t *testing.T) {
	const up, down = 1000, 20000 // bytes the client sends, and the guest answers
	port := testkit.FreePort(t)
	g, table := flowsHarness(t, testkit.Itoa(port)+"/tcp", nil)
	guestAddr := netip.AddrPortFrom(guest4.Addr(), port)
	ln, err := gonet.ListenTCP(g.Stack, memguest.FullAddress(guestAddr), ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.CopyN(io.Discard, c, up)
		c.Write(make([]byte, down))
		io.Copy(io.Discard, c) // until the client closes
	}()
	c, err := net.DialTimeout("tcp4", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port).String(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(make([]byte, up)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, down)); err != nil {
		t.Fatal(err)
	}
	f := waitFlows(t, table, 1)[0]
	client := netip.MustParseAddrPort(c.LocalAddr().String())
	if f.Proto != flowtable.TCP || f.Direction != flowtable.Inbound || f.Guest != guestAddr || f.Remote != client ||
		f.Local != netip.MustParseAddrPort(c.RemoteAddr().String()) || f.State != "established" {
		t.Errorf("flow %+v, want inbound tcp from %s to %s, established", f, client, guestAddr)
	}
	if f.BytesToGuest != up || f.BytesFromGuest != down || f.PacketsFromGuest == 0 || f.PacketsToGuest == 0 {
		t.Errorf("flow counted %d bytes to the guest and %d from it, in %d/%d packets; want %d and %d",
			f.BytesToGuest, f.BytesFromGuest, f.PacketsToGuest, f.PacketsFromGuest, up, down)
	}
	c.Close()
	waitFlows(t, table, 0)
	tot := totals(table, flowtable.TCP, flowtable.Inbound)
	if tot.Opened != 1 || tot.Closed != 1 || tot.BytesToGuest != up || tot.BytesFromGuest != down {
		t.Errorf("totals %+v after close, want 1 opened and closed, %d and %d bytes", tot, up, down)
	}
	if h := table.Dials(flowtable.Inbound, true); h.Count != 1 {
		t.Errorf("%d inbound dials observed, want 1", h.Count)
	}
}

func TestInboundUDPFlowListedAndExpired(t *testing.T) {
	port := testkit.FreePort(t)
	g, table := flowsHarness(t, testkit.Itoa(port)+"/udp", func(c *inbound.Config) { c.UDPIdleTimeout = 300 * time.Millisecond })
	guestAddr := netip.AddrPortFrom(guest4.Addr(), port)
	guestEcho(t, g, guestAddr)
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dst := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
	got, _, err := testkit.UDPRoundTrip(c, dst, "ping", 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	f := waitFlows(t, table, 1)[0]
	client := netip.MustParseAddrPort(c.LocalAddr().String())
	if f.Proto != flowtable.UDP || f.Direction != flowtable.Inbound || f.Guest != guestAddr || f.Remote != client ||
		f.Local.Port() != port || f.State != "replied" {
		t.Errorf("flow %+v, want inbound udp from %s to %s, replied", f, client, guestAddr)
	}
	if f.BytesToGuest != 4 || f.PacketsToGuest != 1 || f.BytesFromGuest != uint64(len(got)) || f.PacketsFromGuest != 1 {
		t.Errorf("flow counted %d/%d bytes/packets to the guest, %d/%d from it; want 4/1 and %d/1",
			f.BytesToGuest, f.PacketsToGuest, f.BytesFromGuest, f.PacketsFromGuest, len(got))
	}
	waitFlows(t, table, 0) // idle past its timeout: expired
	if tot := totals(table, flowtable.UDP, flowtable.Inbound); tot.Closed != 1 || tot.BytesToGuest != 4 {
		t.Errorf("totals %+v after expiry, want 1 closed with 4 bytes to the guest", tot)
	}
}

// totals returns table's total of p and d.
func totals(table *flowtable.Table, p flowtable.Proto, d flowtable.Direction) flowtable.Total {
	for _, t := range table.Totals() {
		if t.Proto == p && t.Direction == d {
			return t
		}
	}
	return flowtable.Total{}
}
