package nat_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/masqnet/masq/flowtable"
	"github.com/masqnet/masq/internal/testkit"
)

// waitFlows polls the table until it lists n flows of proto, for at most
// 5 s.
func waitFlows(t *testing.T, table *flowtable.Table, proto flowtable.Proto, n int) []flowtable.Info {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		f := table.Flows(flowtable.Filter{Proto: proto, HasProto: true})
		if len(f) == n {
			return f
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d %s flows after 5s, want %d: %+v", len(f), proto, n, f)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestUDPFlowListedCountedAndExpired(t *testing.T) {
	pod := newFakePod()
	dst := netip.AddrPortFrom(world4, 7)
	pod.route(dst, testkit.UDPEcho(t))
	g, n := harness(t, pod, nil)
	c := guestUDP(t, g, guest4.Addr())
	const msg = "twelve bytes"
	for range 3 {
		if got, _, err := testkit.UDPRoundTrip(c, dst, msg, 2*time.Second); err != nil || got != msg {
			t.Fatalf("round trip: %q, %v", got, err)
		}
	}
	f := waitFlows(t, n.Flows(), flowtable.UDP, 1)[0]
	src := netip.MustParseAddrPort(c.LocalAddr().String())
	if f.Direction != flowtable.Outbound || f.Guest != src || f.Remote != dst || f.Remotes != 1 || f.State != "replied" {
		t.Errorf("flow %+v, want outbound udp %s -> %s, replied", f, src, dst)
	}
	if f.BytesFromGuest != 3*uint64(len(msg)) || f.BytesToGuest != 3*uint64(len(msg)) || f.PacketsFromGuest != 3 || f.PacketsToGuest != 3 {
		t.Errorf("flow counted %d/%d bytes, %d/%d packets; want %d bytes and 3 packets each way",
			f.BytesFromGuest, f.BytesToGuest, f.PacketsFromGuest, f.PacketsToGuest, 3*len(msg))
	}
	if got := n.ExpireUDP(time.Now().Add(time.Hour)); got != 1 {
		t.Fatalf("expired %d flows, want 1", got)
	}
	waitFlows(t, n.Flows(), flowtable.UDP, 0)
	for _, tot := range n.Flows().Totals() {
		if tot.Proto == flowtable.UDP && tot.Direction == flowtable.Outbound &&
			(tot.Opened != 1 || tot.Closed != 1 || tot.PacketsFromGuest != 3 || tot.BytesToGuest != 3*uint64(len(msg))) {
			t.Errorf("udp totals %+v after expiry, want the flow's counts", tot)
		}
	}
}

func TestICMPEchoFlowListed(t *testing.T) {
	pod := newFakePod()
	pod.up[world4] = true
	g, n := harness(t, pod, nil)
	if err := g.Ping(world4, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	f := waitFlows(t, n.Flows(), flowtable.ICMP, 1)[0]
	if f.Guest.Addr() != guest4.Addr() || f.Remote.Addr() != world4 || f.PacketsFromGuest != 1 || f.PacketsToGuest != 1 || f.State != "replied" {
		t.Errorf("flow %+v, want an echo flow from %s to %s, one packet each way", f, guest4.Addr(), world4)
	}
}

func TestTCPDialFailureLeavesNoFlow(t *testing.T) {
	pod := newFakePod()
	g, n := harness(t, pod, nil)
	if c, err := dial(g, netip.AddrPortFrom(world4, 81), 2*time.Second); err == nil {
		c.Close()
		t.Fatal("dial to an unrouted destination succeeded")
	}
	waitFlows(t, n.Flows(), flowtable.TCP, 0)
	if h := n.Flows().Dials(flowtable.Outbound, false); h.Count != 1 {
		t.Errorf("%d failed dials observed, want 1", h.Count)
	}
}
