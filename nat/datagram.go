package nat

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/masqnet/masq/flowtable"
	"github.com/masqnet/masq/internal/relay"
	"github.com/masqnet/masq/stack"
)

// datagramProto is what differs between the datagram protocols masq
// proxies (UDP and ICMP echo): how a pod socket is opened, and how a reply
// is written to the guest.
type datagramProto interface {
	// listen opens a pod socket toward dst's family; port is the guest's
	// source port (UDP) or echo identifier (ICMP).
	listen(pod Pod, dst netip.Addr, port uint16) (UDPConn, error)
	// reply writes payload, read from the pod socket, to the guest from
	// src to dst.
	reply(s *stack.Sender, src, dst netip.AddrPort, payload []byte) error
	// echo reports whether the protocol is ICMP echo.
	echo() bool
}

// datagramEnv is what a datagram table and its flows share, passed in
// by the NAT as values: none of it owns the flows. The table holds it and
// each flow points to it.
type datagramEnv struct {
	pod   Pod
	st    *stack.Stack    // writes replies to the guest
	reg   *relay.Registry // tracks each flow's goroutine
	bufs  *relay.Pool
	now   func() time.Time
	log   *slog.Logger
	flows *flowtable.Table // lists and counts the flows
	proto datagramProto
	stats flowCounters
	errs  *guestErrors // relays the pod sockets' ICMP errors
	batch *udpBatch    // holds datagrams until a burst ends; nil: none held
	// idle returns the idle timeout of a flow toward dst (policy).
	idle func(dst netip.AddrPort) time.Duration

	perFlow int          // destination entries of one flow: min(maxFlowPeers, the table's bound)
	peers   atomic.Int64 // destination entries held by the table's flows
}

// flowCounters are one datagram table's counters in counters.
type flowCounters struct {
	limited, opened, expired, evicted, openFailed, sendFailed *atomic.Uint64
}

// datagramTable holds the guest's flows of one datagram protocol, keyed by
// the guest's source address and port (or echo identifier): one pod socket
// per key, whatever the destination (endpoint-independent mapping, RFC
// 4787 REQ-1).
//
// Its memory is bounded globally, not per flow: at most maxFlows flows
// (each a pod socket and a goroutine) and maxPeers destination entries
// across all of them. A new flow or destination beyond either bound evicts
// the least recently used flows to make room, so a guest that floods its
// own table still opens new flows (its DNS queries among them); only the
// flood's oldest flows lose their mapping.
type datagramTable struct {
	env      *datagramEnv
	maxFlows int
	maxPeers int64 // destination entries across all flows

	mu    sync.Mutex
	flows map[flowKey]*datagramFlow // guarded by mu
	lru   lru[*datagramFlow]        // eviction order; guarded by mu
}

// flowKey names a flow: the guest's source, and the family of the pod
// socket (a guest IPv6 flow to the gateway's DNS may leave over IPv4).
type flowKey struct {
	src  netip.AddrPort
	pod4 bool
}

// newDatagramTable returns a table of at most maxFlows flows holding at
// most maxPeers destination entries in all; env's perFlow and peers are
// its to set.
func newDatagramTable(env *datagramEnv, maxFlows, maxPeers int) *datagramTable {
	env.perFlow = min(maxFlowPeers, maxPeers)
	return &datagramTable{env: env, maxFlows: maxFlows, maxPeers: int64(maxPeers),
		flows: make(map[flowKey]*datagramFlow)}
}

// forward sends one guest datagram: payload from src, toward dst as the
// guest addressed it, d.Dst from the pod. It runs on the packet path and
// never blocks long: a table lookup, at most a socket() and bind() for a
// new flow (and the eviction of an old one), and a send on a datagram
// socket. It reports false when the pod cannot reach dst at all (no socket
// or no route for its family), so the caller can answer "unreachable" at
// once. quote is what an ICMP error about the datagram quotes (nil: none
// is relayed); ttl is the guest's TTL (hop limit), which the pod sends one
// less of (0: the pod's default).
func (t *datagramTable) forward(src, dst netip.AddrPort, d Decision, payload, quote []byte, ttl uint8) bool {
	var err error
	// A flow evicted or expired between the lookup and the send is gone:
	// the second try opens a fresh one.
	for try := 0; try < 2; try++ {
		f, ferr := t.flow(src, d.Dst)
		if ferr != nil {
			t.env.stats.openFailed.Add(1)
			return false // no pod socket for dst's family
		}
		var added bool
		added, err = f.send(payload, d.Dst, dst, quote, ttl)
		if added && t.env.peers.Load() > t.maxPeers {
			t.makeRoom(f)
		}
		if !errors.Is(err, errFlowEnded) {
			break
		}
	}
	if errors.Is(err, errFlowEnded) {
		t.env.stats.sendFailed.Add(1) // ended twice in a row: dropped
	}
	return !errors.Is(err, syscall.ENETUNREACH) && !errors.Is(err, syscall.EHOSTUNREACH)
}

// flow returns the flow for the guest's src toward dst's family, creating
// it (and its pod socket) when there is none, and evicting the least
// recently used flow when the table is full.
func (t *datagramTable) flow(src, dst netip.AddrPort) (*datagramFlow, error) {
	key := flowKey{src: src, pod4: dst.Addr().Is4()}
	t.mu.Lock()
	defer t.mu.Unlock()
	if f := t.flows[key]; f != nil {
		if !f.ended.Load() {
			return f, nil
		}
		delete(t.flows, key) // its socket failed: a fresh one
		f.Abort()
	}
	conn, err := t.env.proto.listen(t.env.pod, dst.Addr(), src.Port())
	if err != nil {
		t.env.log.Debug("flow refused", "src", src, "dst", dst, "err", err)
		return nil, err
	}
	f := newDatagramFlow(t.env, key, conn, t.env.idle(dst))
	if !t.env.reg.Track(f) {
		conn.Close()
		return nil, net.ErrClosed
	}
	for len(t.flows) >= t.maxFlows && t.evictLocked(nil) {
	}
	t.flows[key] = f
	t.env.stats.opened.Add(1)
	f.account(dst)
	go f.readLoop() // tracked above: the registry waits for it
	return f, nil
}

// makeRoom evicts least recently used flows other than keep until the
// table's destination entries are within their bound. keep has just added
// one and must not lose it.
func (t *datagramTable) makeRoom(keep *datagramFlow) {
	t.mu.Lock()
	for t.env.peers.Load() > t.maxPeers && t.evictLocked(keep) {
	}
	t.mu.Unlock()
}

// evictLocked ends the least recently used flow other than keep, counted,
// and reports whether there was one. t.mu must be held. Its destination
// entries are released at once; its socket closes, and its goroutine ends
// on its own.
func (t *datagramTable) evictLocked(keep *datagramFlow) bool {
	f, ok := t.lru.oldest(func(f *datagramFlow) (int64, bool) {
		if f == keep || t.flows[f.key] != f {
			return 0, false
		}
		return f.lastActive.Load(), true
	}, t.all)
	if !ok {
		return false
	}
	delete(t.flows, f.key)
	t.env.stats.evicted.Add(1)
	if b := t.env.batch; b != nil {
		b.flushFlow(f) // the guest sent them before the flow had to go
	}
	f.release()
	f.Abort()
	return true
}

// all yields every flow and when it was last used; t.mu must be held.
func (t *datagramTable) all(yield func(*datagramFlow, int64) bool) {
	for _, f := range t.flows {
		if !yield(f, f.lastActive.Load()) {
			return
		}
	}
}

// expire ends the flows idle at now for longer than their timeout. It
// returns how many it ended and how many destination entries they held.
func (t *datagramTable) expire(now time.Time) (flows, peers int) {
	t.mu.Lock()
	var idle []*datagramFlow
	for k, f := range t.flows {
		if f.ended.Load() || f.idleSince(now) > f.idle {
			// Out of the table before its socket closes: a datagram
			// arriving meanwhile opens a fresh flow instead of being
			// sent on a closed socket.
			delete(t.flows, k)
			idle = append(idle, f)
		}
	}
	if len(idle) > 0 {
		t.lru.reset()
	}
	t.mu.Unlock()
	for _, f := range idle {
		t.env.stats.expired.Add(1)
		peers += f.release()
		f.Abort()
	}
	return len(idle), peers
}

// len returns the number of flows.
func (t *datagramTable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.flows)
}
