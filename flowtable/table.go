package flowtable

import (
	"cmp"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Table is the live flows of one masq and the totals of those that
// ended. It is safe for concurrent use. A nil *Table accounts nothing:
// Open returns a nil Entry, and it lists no flow.
type Table struct {
	now func() time.Time

	mu      sync.Mutex
	entries map[*Entry]struct{}             // guarded by mu
	nextID  uint64                          // guarded by mu
	ended   [numProtos][numDirections]Total // closed flows' counts; guarded by mu

	dials [numDirections][2]Histogram // by direction, failed (0) or connected (1)
}

// New returns an empty table; now is its clock (nil: time.Now), which
// the flows' counts must use too.
func New(now func() time.Time) *Table {
	if now == nil {
		now = time.Now
	}
	t := &Table{now: now, entries: make(map[*Entry]struct{})}
	for d := range t.dials {
		for ok := range t.dials[d] {
			t.dials[d][ok].bounds = DialBuckets
		}
	}
	return t
}

// Now returns the table's clock in Unix ns, what counts are stamped with.
func (t *Table) Now() int64 {
	if t == nil {
		return 0
	}
	return t.now().UnixNano()
}

// Open adds a flow the guest (Outbound) or a client (Inbound) opened and
// returns its entry, which Close must end.
func (t *Table) Open(p Proto, d Direction, guest, remote netip.AddrPort) *Entry {
	if t == nil {
		return nil
	}
	e := &Entry{proto: p, dir: d, guest: guest, remote: remote, opened: t.Now()}
	t.mu.Lock()
	t.nextID++
	e.id = t.nextID
	t.entries[e] = struct{}{}
	t.ended[p][d].Opened++
	t.mu.Unlock()
	return e
}

// Close ends e: it leaves the table and its counts join the totals. It is
// safe to call more than once, and with nil.
func (t *Table) Close(e *Entry) {
	if t == nil || e == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.entries[e]; !ok {
		return
	}
	delete(t.entries, e)
	tot := &t.ended[e.proto][e.dir]
	tot.Closed++
	tot.add(e.counts())
}

// Len returns the number of live flows.
func (t *Table) Len() int {
	if t == nil {
		return 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.entries)
}

// Flows returns the live flows f matches, oldest first.
func (t *Table) Flows(f Filter) []Info {
	if t == nil {
		return []Info{}
	}
	now := t.Now()
	t.mu.Lock()
	out := make([]Info, 0, len(t.entries))
	for e := range t.entries {
		if f.matches(e) {
			out = append(out, e.info(now))
		}
	}
	t.mu.Unlock()
	slices.SortFunc(out, func(a, b Info) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// Total is what the flows of one protocol and direction carried, live
// and ended together: counters that never go down.
type Total struct {
	Proto     Proto
	Direction Direction
	// Opened and Closed count flows; Opened-Closed are live.
	Opened, Closed                   uint64
	BytesFromGuest, PacketsFromGuest uint64
	BytesToGuest, PacketsToGuest     uint64
}

// counts are one flow's bytes and packets each way.
type counts struct{ bytesFrom, packetsFrom, bytesTo, packetsTo uint64 }

func (t *Total) add(c counts) {
	t.BytesFromGuest += c.bytesFrom
	t.PacketsFromGuest += c.packetsFrom
	t.BytesToGuest += c.bytesTo
	t.PacketsToGuest += c.packetsTo
}

// Totals returns one Total for each protocol and direction. They are
// read under the lock Close takes, so a flow that ends between two reads
// is counted in both, once: the totals never go down.
func (t *Table) Totals() []Total {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var sum [numProtos][numDirections]Total
	for p := range sum {
		for d := range sum[p] {
			sum[p][d] = t.ended[p][d]
			sum[p][d].Proto, sum[p][d].Direction = Proto(p), Direction(d)
		}
	}
	for e := range t.entries {
		sum[e.proto][e.dir].add(e.counts())
	}
	out := make([]Total, 0, len(sum)*int(numDirections))
	for p := range sum {
		out = append(out, sum[p][:]...)
	}
	return out
}

// ObserveDial records how long a TCP connect took: from the pod to the
// world for an Outbound flow, into the guest for an Inbound one.
func (t *Table) ObserveDial(d Direction, took time.Duration, connected bool) {
	if t == nil {
		return
	}
	ok := 0
	if connected {
		ok = 1
	}
	t.dials[d][ok].observe(took)
}

// Dials returns the dial-latency histogram of direction d, of the
// connects that succeeded (connected) or failed.
func (t *Table) Dials(d Direction, connected bool) HistogramSnapshot {
	if t == nil {
		return HistogramSnapshot{}
	}
	ok := 0
	if connected {
		ok = 1
	}
	return t.dials[d][ok].Snapshot()
}

// Filter selects flows; its zero value selects all.
type Filter struct {
	// Proto, when HasProto, is the only protocol selected.
	Proto    Proto
	HasProto bool
	// Port, when not 0, must be the guest's, the remote's or the local
	// port.
	Port uint16
	// Addr, when valid, must be the guest's, the remote's or the local
	// address.
	Addr netip.Addr
}

// matches reports whether f selects e.
func (f Filter) matches(e *Entry) bool {
	if f.HasProto && e.proto != f.Proto {
		return false
	}
	var local netip.AddrPort
	if l := e.local.Load(); l != nil {
		local = *l
	}
	if f.Port != 0 && e.guest.Port() != f.Port && e.remote.Port() != f.Port && local.Port() != f.Port {
		return false
	}
	if a := f.Addr.Unmap(); a.IsValid() && e.guest.Addr() != a && e.remote.Addr() != a && local.Addr().Unmap() != a {
		return false
	}
	return true
}

// DialBuckets are the upper bounds of the dial-latency histograms'
// buckets: from a LAN's half millisecond to nat's 20 s dial timeout.
var DialBuckets = []time.Duration{
	500 * time.Microsecond, time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond,
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond,
	250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2500 * time.Millisecond,
	5 * time.Second, 10 * time.Second, 20 * time.Second,
}

// Histogram counts durations into fixed buckets with atomics: observing
// one takes no lock and allocates nothing.
type Histogram struct {
	bounds []time.Duration
	counts [16]atomic.Uint64 // counts[i]: bounds[i-1] < d <= bounds[i]; the last: beyond every bound
	sum    atomic.Int64      // ns
}

func (h *Histogram) observe(d time.Duration) {
	i, _ := slices.BinarySearch(h.bounds, d)
	h.counts[i].Add(1)
	h.sum.Add(int64(d))
}

// HistogramSnapshot is a Histogram's state, in Prometheus's shape:
// cumulative counts per upper bound.
type HistogramSnapshot struct {
	// Count is every observation; Sum their total.
	Count uint64
	Sum   time.Duration
	// Bounds[i] has Cumulative[i] observations at or below it.
	Bounds     []time.Duration
	Cumulative []uint64
}

// Snapshot returns h's counts.
func (h *Histogram) Snapshot() HistogramSnapshot {
	s := HistogramSnapshot{Bounds: h.bounds, Cumulative: make([]uint64, len(h.bounds)), Sum: time.Duration(h.sum.Load())}
	var c uint64
	for i := range h.bounds {
		c += h.counts[i].Load()
		s.Cumulative[i] = c
	}
	s.Count = c + h.counts[len(h.bounds)].Load()
	return s
}
