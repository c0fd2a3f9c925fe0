package nat

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

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
}

// flowCounters are one datagram table's counters in counters.
type flowCounters struct {
	limited, opened, expired, sendFailed *atomic.Uint64
}

// datagramTable holds the guest's flows of one datagram protocol, keyed by
// the guest's source address and port (or echo identifier): one pod socket
// per key, whatever the destination (endpoint-independent mapping, RFC
// 4787 REQ-1).
type datagramTable struct {
	n     *NAT
	proto datagramProto
	stats flowCounters
	max   int
	mu    sync.Mutex
	flows map[flowKey]*datagramFlow // guarded by mu
}

// flowKey names a flow: the guest's source, and the family of the pod
// socket (a guest IPv6 flow to the gateway's DNS may leave over IPv4).
type flowKey struct {
	src  netip.AddrPort
	pod4 bool
}

// errFlowLimit says a new flow was not opened because the table is full.
var errFlowLimit = errors.New("flow limit reached")

func newDatagramTable(n *NAT, proto datagramProto, max int, stats flowCounters) *datagramTable {
	return &datagramTable{n: n, proto: proto, max: max, stats: stats, flows: make(map[flowKey]*datagramFlow)}
}

// forward sends one guest datagram: payload from src, toward dst as the
// guest addressed it, d.Dst from the pod. It runs on the packet path and
// never blocks long: a table lookup, at most a socket() and bind() for a
// new flow, and a send on a datagram socket. It reports false when the
// pod cannot reach dst at all (no socket or no route for its family), so
// the caller can answer "unreachable" at once.
func (t *datagramTable) forward(src, dst netip.AddrPort, d Decision, payload []byte) bool {
	f, err := t.flow(src, d.Dst)
	if err != nil {
		return errors.Is(err, errFlowLimit) // at the bound: drop silently
	}
	err = f.send(payload, d.Dst, dst)
	return !errors.Is(err, syscall.ENETUNREACH) && !errors.Is(err, syscall.EHOSTUNREACH)
}

// flow returns the flow for the guest's src toward dst's family, creating
// it (and its pod socket) when there is none.
func (t *datagramTable) flow(src, dst netip.AddrPort) (*datagramFlow, error) {
	key := flowKey{src: src, pod4: dst.Addr().Is4()}
	t.mu.Lock()
	defer t.mu.Unlock()
	if f := t.flows[key]; f != nil {
		return f, nil
	}
	if len(t.flows) >= t.max {
		t.stats.limited.Add(1)
		return nil, errFlowLimit
	}
	conn, err := t.proto.listen(t.n.cfg.Pod, dst.Addr(), src.Port())
	if err != nil {
		t.n.log.Debug("flow refused", "src", src, "dst", dst, "err", err)
		return nil, err
	}
	idle := t.n.cfg.UDPIdleTimeout
	if dst.Port() == dnsPort || dst.Port() == 0 { // DNS, or an ICMP echo
		idle = t.n.cfg.DNSIdleTimeout
	}
	f := newDatagramFlow(t, key, conn, idle)
	if !t.n.track(f) {
		conn.Close()
		return nil, net.ErrClosed
	}
	t.flows[key] = f
	t.stats.opened.Add(1)
	go f.readLoop()
	return f, nil
}

// remove forgets f if it is still the table's flow for its key.
func (t *datagramTable) remove(f *datagramFlow) {
	t.mu.Lock()
	if t.flows[f.key] == f {
		delete(t.flows, f.key)
	}
	t.mu.Unlock()
}

// expire ends the flows idle at now for longer than their timeout and
// returns how many it ended.
func (t *datagramTable) expire(now time.Time) int {
	t.mu.Lock()
	var idle []*datagramFlow
	for k, f := range t.flows {
		if f.idleSince(now) > f.idle {
			// Out of the table before its socket closes: a datagram
			// arriving meanwhile opens a fresh flow instead of being
			// sent on a closed socket.
			delete(t.flows, k)
			idle = append(idle, f)
		}
	}
	t.mu.Unlock()
	for _, f := range idle {
		t.stats.expired.Add(1)
		f.abort()
	}
	return len(idle)
}

// len returns the number of flows.
func (t *datagramTable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.flows)
}
