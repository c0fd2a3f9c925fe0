package flowtable

import (
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"golang.org/x/sys/cpu"
)

// Proto is a flow's protocol.
type Proto uint8

// The protocols masq proxies.
const (
	TCP Proto = iota
	UDP
	ICMP // ICMP echo
	numProtos
)

var protoNames = [numProtos]string{"tcp", "udp", "icmp"}

// String returns "tcp", "udp" or "icmp".
func (p Proto) String() string {
	if p < numProtos {
		return protoNames[p]
	}
	return "unknown"
}

// MarshalText implements encoding.TextMarshaler.
func (p Proto) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (p *Proto) UnmarshalText(b []byte) error {
	v, ok := ParseProto(string(b))
	if !ok {
		return &ParseError{What: "protocol", Value: string(b)}
	}
	*p = v
	return nil
}

// ParseProto parses "tcp", "udp" or "icmp".
func ParseProto(s string) (Proto, bool) {
	for i, n := range protoNames {
		if n == s {
			return Proto(i), true
		}
	}
	return 0, false
}

// Direction says who opened a flow.
type Direction uint8

// The directions of a flow.
const (
	Outbound Direction = iota // the guest opened it, toward the world
	Inbound                   // a client opened it on a forwarded port
	numDirections
)

var directionNames = [numDirections]string{"outbound", "inbound"}

// String returns "outbound" or "inbound".
func (d Direction) String() string {
	if d < numDirections {
		return directionNames[d]
	}
	return "unknown"
}

// MarshalText implements encoding.TextMarshaler.
func (d Direction) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Direction) UnmarshalText(b []byte) error {
	for i, n := range directionNames {
		if n == string(b) {
			*d = Direction(i)
			return nil
		}
	}
	return &ParseError{What: "direction", Value: string(b)}
}

// ParseError is a protocol or direction name that is none of the known.
type ParseError struct{ What, Value string }

// Error implements error.
func (e *ParseError) Error() string { return "unknown " + e.What + " " + e.Value }

// Half counts one direction of a flow. Its writer is the one goroutine
// that carries that direction (a TCP copy loop, a datagram read loop or
// the link's packet path), so its atomics are never contended by another
// writer; it fills a cache line of its own so that the two directions'
// writers, on two cores, do not share one. A nil *Half counts nothing.
type Half struct {
	bytes   atomic.Uint64
	packets atomic.Uint64
	last    atomic.Int64 // Unix ns of the last count; 0: none
	fin     atomic.Bool  // the sender closed this direction (TCP FIN)
	_       cpu.CacheLinePad
}

// Add counts one datagram of n bytes at now (Unix ns).
func (h *Half) Add(n int, now int64) {
	if h == nil {
		return
	}
	h.bytes.Add(uint64(n))
	h.packets.Add(1)
	h.last.Store(now)
}

// AddBytes counts n bytes of a stream at now (Unix ns); its packets are
// counted apart (Entry.SetSegments).
func (h *Half) AddBytes(n int, now int64) {
	if h == nil {
		return
	}
	h.bytes.Add(uint64(n))
	h.last.Store(now)
}

// Fin records that the sender closed this direction.
func (h *Half) Fin() {
	if h != nil {
		h.fin.Store(true)
	}
}

// Entry is one live flow of a Table: made by Table.Open when the flow is
// set up, ended by Table.Close. Its counters are updated by the flow's
// goroutines; everything else is set before the flow carries data. A nil
// *Entry is a flow nobody accounts: every method does nothing.
type Entry struct {
	// FromGuest counts what the guest sent; ToGuest what it was sent.
	FromGuest, ToGuest Half

	id            uint64
	proto         Proto
	dir           Direction
	guest, remote netip.AddrPort
	opened        int64 // Unix ns

	local       atomic.Pointer[netip.AddrPort] // set once, when the pod socket is known
	established atomic.Bool                    // a TCP flow's both sides are connected
	remotes     atomic.Int32                   // destinations of a datagram flow
	segments    atomic.Pointer[func() (fromGuest, toGuest uint64)]
}

// Count returns the Half counting what from sent: the guest (true) or
// the other end. It is nil on a nil Entry.
func (e *Entry) Count(fromGuest bool) *Half {
	switch {
	case e == nil:
		return nil
	case fromGuest:
		return &e.FromGuest
	}
	return &e.ToGuest
}

// SetLocal records the pod's end of the flow: its socket's local address.
func (e *Entry) SetLocal(a netip.AddrPort) {
	if e != nil {
		e.local.Store(&a)
	}
}

// SetEstablished records that a TCP flow's both sides are connected.
func (e *Entry) SetEstablished() {
	if e != nil {
		e.established.Store(true)
	}
}

// AddRemote counts a new destination of a datagram flow (one pod socket
// may send to many).
func (e *Entry) AddRemote() {
	if e != nil {
		e.remotes.Add(1)
	}
}

// SetSegments gives a stream flow's packet counts: fn returns the
// segments the guest's side received and sent (gVisor's endpoint
// counters), read when the table is.
func (e *Entry) SetSegments(fn func() (fromGuest, toGuest uint64)) {
	if e != nil {
		e.segments.Store(&fn)
	}
}

// Info is a snapshot of one flow, as /flows serves it.
type Info struct {
	ID        uint64    `json:"id"`
	Proto     Proto     `json:"proto"`
	Direction Direction `json:"direction"`
	// State is "connecting" (TCP, dialling), "established", "fin-guest"
	// or "fin-remote" (one side sent FIN), "closing" (both did);
	// "unreplied" or "replied" for UDP and ICMP echo.
	State string `json:"state"`
	// Guest is the guest's address and port (echo identifier).
	Guest netip.AddrPort `json:"guest"`
	// Remote is the other end as the pod reaches it: the destination of
	// an outbound flow (its first, when a datagram flow has several), the
	// client of an inbound one.
	Remote netip.AddrPort `json:"remote"`
	// Remotes counts the destinations of an outbound datagram flow.
	Remotes int `json:"remotes,omitempty"`
	// Local is the pod socket's own address; zero while TCP dials.
	Local netip.AddrPort `json:"local,omitzero"`
	// Bytes are payload bytes; TCP packets are the segments on the
	// guest's side.
	BytesFromGuest   uint64 `json:"bytes_from_guest"`
	PacketsFromGuest uint64 `json:"packets_from_guest"`
	BytesToGuest     uint64 `json:"bytes_to_guest"`
	PacketsToGuest   uint64 `json:"packets_to_guest"`
	// AgeSeconds is the time since the flow opened, IdleSeconds since
	// it last carried data.
	AgeSeconds  float64 `json:"age_seconds"`
	IdleSeconds float64 `json:"idle_seconds"`
}

// Age returns AgeSeconds as a duration.
func (i Info) Age() time.Duration { return time.Duration(i.AgeSeconds * float64(time.Second)) }

// Idle returns IdleSeconds as a duration.
func (i Info) Idle() time.Duration { return time.Duration(i.IdleSeconds * float64(time.Second)) }

// counts returns the flow's bytes and packets each way.
func (e *Entry) counts() (c counts) {
	c.bytesFrom, c.bytesTo = e.FromGuest.bytes.Load(), e.ToGuest.bytes.Load()
	c.packetsFrom, c.packetsTo = e.FromGuest.packets.Load(), e.ToGuest.packets.Load()
	if fn := e.segments.Load(); fn != nil {
		c.packetsFrom, c.packetsTo = (*fn)()
	}
	return c
}

// info returns the flow's snapshot at now (Unix ns).
func (e *Entry) info(now int64) Info {
	c := e.counts()
	i := Info{ID: e.id, Proto: e.proto, Direction: e.dir, Guest: e.guest, Remote: e.remote,
		Remotes:        int(e.remotes.Load()),
		BytesFromGuest: c.bytesFrom, PacketsFromGuest: c.packetsFrom,
		BytesToGuest: c.bytesTo, PacketsToGuest: c.packetsTo,
	}
	if l := e.local.Load(); l != nil {
		i.Local = *l
	}
	last := max(e.opened, e.FromGuest.last.Load(), e.ToGuest.last.Load())
	i.AgeSeconds = time.Duration(now - e.opened).Seconds()
	i.IdleSeconds = time.Duration(max(0, now-last)).Seconds()
	i.State = e.state(i)
	return i
}

// state names the flow's state.
func (e *Entry) state(i Info) string {
	if e.proto != TCP {
		if i.PacketsToGuest == 0 && i.Direction == Outbound || i.PacketsFromGuest == 0 && i.Direction == Inbound {
			return "unreplied"
		}
		return "replied"
	}
	fromFin, toFin := e.FromGuest.fin.Load(), e.ToGuest.fin.Load()
	switch {
	case !e.established.Load():
		return "connecting"
	case fromFin && toFin:
		return "closing"
	case fromFin:
		return "fin-guest"
	case toFin:
		return "fin-remote"
	}
	return "established"
}

// AddrPortOf returns a socket address as a netip.AddrPort, v4-mapped
// addresses unmapped; the zero AddrPort for any other kind of address.
func AddrPortOf(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.TCPAddr:
		ap = a.AddrPort()
	case *net.UDPAddr:
		ap = a.AddrPort()
	case *net.IPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		ap = netip.AddrPortFrom(ip, 0)
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
