package nat

import (
	"sync"
	"time"

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
type synQuotes struct {
	max int           // entries at most
	ttl time.Duration // an entry older than this is an orphan

	mu sync.Mutex
	m  map[gstack.TransportEndpointID]synQuote // guarded by mu
}

// quotedTransportBytes is how much of the transport header an ICMP error
// quotes after the IP header: the first 64 bits (RFC 792), TCP's ports and
// sequence number, which the guest's kernel matches to its socket.
const quotedTransportBytes = 8

// synQuote is one kept quote and when it was kept.
type synQuote struct {
	b    []byte
	kept time.Time
}

func newSYNQuotes(max int, ttl time.Duration) *synQuotes {
	return &synQuotes{max: max, ttl: ttl, m: make(map[gstack.TransportEndpointID]synQuote)}
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

// keep remembers the quote of pkt, a SYN, for id at now. It reports
// whether it made a new entry: false when one is there already (a
// retransmission) or the table is full of live entries.
func (q *synQuotes) keep(id gstack.TransportEndpointID, pkt *gstack.PacketBuffer, now time.Time) bool {
	ip, tcp := pkt.NetworkHeader().Slice(), pkt.TransportHeader().Slice()
	q.mu.Lock()
	defer q.mu.Unlock()
	if _, ok := q.m[id]; ok {
		return false
	}
	if len(q.m) >= q.max && q.expireLocked(now) == 0 {
		return false
	}
	b := make([]byte, 0, len(ip)+quotedTransportBytes)
	q.m[id] = synQuote{b: append(append(b, ip...), tcp[:quotedTransportBytes]...), kept: now}
	return true
}

// take returns and forgets the quote kept for id, nil if none.
func (q *synQuotes) take(id gstack.TransportEndpointID) []byte {
	q.mu.Lock()
	defer q.mu.Unlock()
	e, ok := q.m[id]
	if !ok {
		return nil
	}
	delete(q.m, id)
	return e.b
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
			delete(q.m, id)
			n++
		}
	}
	return n
}

// len returns the number of entries.
func (q *synQuotes) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.m)
}
