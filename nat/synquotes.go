package nat

import (
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// synQuotes keeps, for each guest SYN being dialled, the part of it an
// ICMP error quotes (its IP header and first 8 bytes of TCP): gVisor's
// forwarder does not keep it. An entry is made before the forwarder sees
// the SYN (its handler may run before HandlePacket returns) and undone at
// once when the forwarder turned the SYN down; the handler takes it. What
// neither removes (a retransmitted SYN arriving between the handler's take
// and its completion) ages out after ttl, and the table is bounded, so no
// sequence of guest frames can fill it for good.
//
// An entry lives while its SYN is dialled, so the table also knows how
// many dials each destination has pending, and holds each to maxPerDst: a
// guest flooding one address that never answers (each dial waits out the
// dial timeout) takes a share of the forwarder's in-flight bound, not all
// of it, and its other connections still go through.
type synQuotes struct {
	max       int           // entries at most
	maxPerDst int           // entries of one destination address at most
	ttl       time.Duration // an entry older than this is an orphan

	mu     sync.Mutex
	m      map[gstack.TransportEndpointID]synQuote // guarded by mu
	perDst map[tcpip.Address]int                   // entries by destination; guarded by mu
	swept  time.Time                               // the last sweep on a full table; guarded by mu
}

// sweepInterval spaces the sweeps a full table makes for orphans: a flood
// of SYNs must not cost a walk of the table each, and an orphan only
// appears after ttl anyway.
const sweepInterval = time.Second

// quotedTransportBytes is how much of the transport header an ICMP error
// quotes after the IP header: the first 64 bits (RFC 792), TCP's ports and
// sequence number, which the guest's kernel matches to its socket.
const quotedTransportBytes = 8

// synQuote is one kept quote and when it was kept.
type synQuote struct {
	b    []byte
	kept time.Time
}

func newSYNQuotes(max, maxPerDst int, ttl time.Duration) *synQuotes {
	return &synQuotes{max: max, maxPerDst: maxPerDst, ttl: ttl,
		m: make(map[gstack.TransportEndpointID]synQuote), perDst: make(map[tcpip.Address]int)}
}

// isSYN reports whether pkt's TCP header is a connection request: SYN
// without ACK, the only segment gVisor's forwarder takes.
func isSYN(pkt *gstack.PacketBuffer) bool {
	tcp := pkt.TransportHeader().Slice()
	if len(tcp) < header.TCPMinimumSize {
		return false
	}
	f := header.TCP(tcp).Flags()
	return f.Contains(header.TCPFlagSyn) && !f.Contains(header.TCPFlagAck)
}

// keep remembers the quote of pkt, a SYN, for id at now. kept reports a
// new entry: false when one is there already (a retransmission) or the
// table is full of live entries. admit is false when the SYN's
// destination already has maxPerDst dials pending: the SYN is to be
// dropped (the guest retransmits it).
func (q *synQuotes) keep(id gstack.TransportEndpointID, pkt *gstack.PacketBuffer, now time.Time) (kept, admit bool) {
	ip, tcp := pkt.NetworkHeader().Slice(), pkt.TransportHeader().Slice()
	q.mu.Lock()
	defer q.mu.Unlock()
	if _, ok := q.m[id]; ok {
		return false, true
	}
	if q.perDst[id.LocalAddress] >= q.maxPerDst || len(q.m) >= q.max {
		q.sweepLocked(now) // orphans may hold the places
	}
	if q.perDst[id.LocalAddress] >= q.maxPerDst {
		return false, false
	}
	if len(q.m) >= q.max {
		return false, true
	}
	b := make([]byte, 0, len(ip)+quotedTransportBytes)
	q.m[id] = synQuote{b: append(append(b, ip...), tcp[:quotedTransportBytes]...), kept: now}
	q.perDst[id.LocalAddress]++
	return true, true
}

// take returns and forgets the quote kept for id, nil if none.
func (q *synQuotes) take(id gstack.TransportEndpointID) []byte {
	q.mu.Lock()
	defer q.mu.Unlock()
	e, ok := q.m[id]
	if !ok {
		return nil
	}
	q.removeLocked(id)
	return e.b
}

// guestTTL returns the TTL (hop limit) of the SYN kept for id, 0 if none.
func (q *synQuotes) guestTTL(id gstack.TransportEndpointID) uint8 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return guestTTL(q.m[id].b)
}

// expire forgets the entries older than ttl at now and returns how many.
func (q *synQuotes) expire(now time.Time) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.expireLocked(now)
}

func (q *synQuotes) expireLocked(now time.Time) int {
	n := 0
	for id, e := range q.m {
		if now.Sub(e.kept) > q.ttl {
			q.removeLocked(id)
			n++
		}
	}
	return n
}

// sweepLocked forgets the orphans at now, at most once per
// sweepInterval; q.mu must be held.
func (q *synQuotes) sweepLocked(now time.Time) {
	if now.Sub(q.swept) < sweepInterval {
		return
	}
	q.swept = now
	q.expireLocked(now)
}

// removeLocked forgets the entry of id, which must be there; q.mu must be
// held.
func (q *synQuotes) removeLocked(id gstack.TransportEndpointID) {
	delete(q.m, id)
	if q.perDst[id.LocalAddress]--; q.perDst[id.LocalAddress] <= 0 {
		delete(q.perDst, id.LocalAddress)
	}
}

// len returns the number of entries.
func (q *synQuotes) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.m)
}
