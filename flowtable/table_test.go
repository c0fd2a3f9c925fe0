package flowtable

import (
	"net/netip"
	"testing"
	"time"
)

var (
	guestA  = netip.MustParseAddrPort("10.0.2.2:40000")
	remoteA = netip.MustParseAddrPort("198.18.0.1:443")
	guestB  = netip.MustParseAddrPort("10.0.2.2:5353")
	remoteB = netip.MustParseAddrPort("198.18.0.2:53")
)

func TestFlowsAndTotals(t *testing.T) {
	now := time.Unix(1000, 0)
	tab := New(func() time.Time { return now })
	a := tab.Open(TCP, Outbound, guestA, remoteA)
	b := tab.Open(UDP, Inbound, guestB, remoteB)
	a.SetLocal(netip.MustParseAddrPort("198.18.1.2:33333"))
	a.SetSegments(func() (uint64, uint64) { return 7, 9 })
	a.SetEstablished()
	a.FromGuest.AddBytes(100, now.UnixNano())
	now = now.Add(3 * time.Second)
	a.ToGuest.AddBytes(200, now.UnixNano())
	a.FromGuest.Fin()
	b.ToGuest.Add(50, now.UnixNano())
	now = now.Add(2 * time.Second)

	flows := tab.Flows(Filter{})
	if len(flows) != 2 || flows[0].ID != 1 || flows[1].ID != 2 {
		t.Fatalf("Flows = %+v, want both, oldest first", flows)
	}
	fa := flows[0]
	if fa.BytesFromGuest != 100 || fa.BytesToGuest != 200 || fa.PacketsFromGuest != 7 || fa.PacketsToGuest != 9 ||
		fa.State != "fin-guest" || fa.Age() != 5*time.Second || fa.Idle() != 2*time.Second {
		t.Errorf("tcp flow %+v: want 100/200 bytes, 7/9 segments, fin-guest, age 5s, idle 2s", fa)
	}
	if fb := flows[1]; fb.State != "unreplied" || fb.PacketsToGuest != 1 || fb.Local.IsValid() {
		t.Errorf("inbound udp flow %+v: want unreplied (the guest never answered), no local address", fb)
	}
	tab.Close(a)
	tab.Close(a) // twice: no double count
	if tab.Len() != 1 {
		t.Fatalf("Len = %d after Close, want 1", tab.Len())
	}
	for _, tot := range tab.Totals() {
		switch {
		case tot.Proto == TCP && tot.Direction == Outbound:
			if tot.Opened != 1 || tot.Closed != 1 || tot.BytesFromGuest != 100 || tot.PacketsToGuest != 9 {
				t.Errorf("tcp totals %+v, want the closed flow's counts", tot)
			}
		case tot.Proto == UDP && tot.Direction == Inbound:
			if tot.Opened != 1 || tot.Closed != 0 || tot.BytesToGuest != 50 {
				t.Errorf("udp totals %+v, want the live flow's counts", tot)
			}
		case tot.Opened != 0:
			t.Errorf("totals %+v: nothing opened there", tot)
		}
	}
}

func TestFilter(t *testing.T) {
	tab := New(nil)
	a := tab.Open(TCP, Outbound, guestA, remoteA)
	a.SetLocal(netip.MustParseAddrPort("[::ffff:198.18.1.2]:33333"))
	tab.Open(UDP, Outbound, guestB, remoteB)
	tests := []struct {
		name string
		f    Filter
		want int
	}{
		{"all", Filter{}, 2},
		{"tcp", Filter{Proto: TCP, HasProto: true}, 1},
		{"icmp", Filter{Proto: ICMP, HasProto: true}, 0},
		{"remote port", Filter{Port: 53}, 1},
		{"guest port", Filter{Port: 40000}, 1},
		{"local port", Filter{Port: 33333}, 1},
		{"guest address", Filter{Addr: guestA.Addr()}, 2},
		{"local address, mapped", Filter{Addr: netip.MustParseAddr("198.18.1.2")}, 1},
		{"remote and proto", Filter{Addr: remoteB.Addr(), Proto: TCP, HasProto: true}, 0},
	}
	for _, tt := range tests {
		if got := len(tab.Flows(tt.f)); got != tt.want {
			t.Errorf("%s: %d flows, want %d", tt.name, got, tt.want)
		}
	}
}

func TestNilTableAndEntryCountNothing(t *testing.T) {
	var tab *Table
	e := tab.Open(TCP, Outbound, guestA, remoteA)
	if e != nil {
		t.Fatal("a nil table opened an entry")
	}
	e.SetLocal(remoteA)
	e.SetEstablished()
	e.AddRemote()
	e.Count(true).Add(1, 1)
	e.Count(false).AddBytes(1, 1)
	e.Count(false).Fin()
	tab.ObserveDial(Outbound, time.Second, true)
	tab.Close(e)
}

func TestDialHistogram(t *testing.T) {
	tab := New(nil)
	for _, d := range []time.Duration{200 * time.Microsecond, 3 * time.Millisecond, 3 * time.Millisecond, time.Minute} {
		tab.ObserveDial(Outbound, d, true)
	}
	tab.ObserveDial(Outbound, time.Second, false)
	h := tab.Dials(Outbound, true)
	if h.Count != 4 || h.Sum != time.Minute+6200*time.Microsecond {
		t.Fatalf("count %d sum %v, want 4 and 1m0.0062s", h.Count, h.Sum)
	}
	at := func(b time.Duration) uint64 {
		for i, bound := range h.Bounds {
			if bound == b {
				return h.Cumulative[i]
			}
		}
		t.Fatalf("no bucket %v", b)
		return 0
	}
	if at(500*time.Microsecond) != 1 || at(2500*time.Microsecond) != 1 || at(5*time.Millisecond) != 3 || at(20*time.Second) != 3 {
		t.Errorf("cumulative counts %v, want 1 at 0.5ms, 3 from 5ms, the minute beyond every bucket", h.Cumulative)
	}
	if f := tab.Dials(Outbound, false); f.Count != 1 || tab.Dials(Inbound, true).Count != 0 {
		t.Errorf("failed/inbound histograms mixed up")
	}
}

// TestCountingDoesNotAllocate pins the data path's cost: counting a
// packet or a copy is atomics only.
func TestCountingDoesNotAllocate(t *testing.T) {
	e := New(nil).Open(UDP, Outbound, guestA, remoteA)
	allocs := testing.AllocsPerRun(1000, func() {
		e.Count(true).Add(100, 1)
		e.Count(false).AddBytes(100, 2)
		e.AddRemote()
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per count, want 0", allocs)
	}
}

func TestProtoAndDirectionText(t *testing.T) {
	for _, p := range []Proto{TCP, UDP, ICMP} {
		b, _ := p.MarshalText()
		var q Proto
		if err := q.UnmarshalText(b); err != nil || q != p {
			t.Errorf("%v round-trips to %v, %v", p, q, err)
		}
	}
	for _, d := range []Direction{Outbound, Inbound} {
		b, _ := d.MarshalText()
		var e Direction
		if err := e.UnmarshalText(b); err != nil || e != d {
			t.Errorf("%v round-trips to %v, %v", d, e, err)
		}
	}
	var p Proto
	if p.UnmarshalText([]byte("sctp")) == nil {
		t.Error("sctp parsed as a protocol")
	}
}

// BenchmarkCount is the data path's cost of accounting: one datagram
// counted, or one copy of a stream with its clock read.
func BenchmarkCount(b *testing.B) {
	e := New(nil).Open(TCP, Outbound, guestA, remoteA)
	b.Run("datagram", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			e.Count(true).Add(100, int64(i))
		}
	})
	b.Run("stream-with-clock", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			e.Count(false).AddBytes(65536, time.Now().UnixNano())
		}
	})
}
