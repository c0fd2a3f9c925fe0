package ports

import (
	"fmt"
	"iter"
	"math/bits"
	"strings"
)

// portBits has one bit per port and protocol: word i of row p holds ports
// 64i..64i+63 of Protocol p+1. Two rows of 65536 bits are 16 KiB.
type portBits [numProtocols][65536 / 64]uint64

// Set is a set of (protocol, port) pairs to forward. It is immutable once
// made, so copies share their storage and any number of goroutines may
// call its methods at once; Contains is O(1). The zero value is the empty
// set. Make one with Parse, New or AllBut.
type Set struct {
	bits *portBits // nil for the empty set; never written after construction
	n    int       // number of pairs in bits
}

// New returns the set of every port in ranges. A range may overlap
// another. It is an error for a range to hold port 0, a reserved port (see
// Reserved), an unknown protocol, or to have First > Last.
func New(ranges ...Range) (Set, error) {
	b := new(portBits)
	for _, r := range ranges {
		if err := r.check(); err != nil {
			return Set{}, fmt.Errorf("port range %s: %w", r, err)
		}
		b.add(r)
	}
	return b.set(), nil
}

// AllBut returns every TCP and UDP port except first..last and the
// reserved ones (see Reserved). With first..last the pod's ephemeral port
// range, it is what KubeVirt forwards when a masquerade interface lists
// no ports: the ephemeral range stays free for the pod's own outgoing
// connections. first > last excludes nothing but the reserved ports.
func AllBut(first, last uint16) Set {
	b := new(portBits)
	start := -1
	for p := 1; p <= 65536; p++ {
		keep := p <= 65535 && (p < int(first) || p > int(last)) && !Reserved(uint16(p))
		switch {
		case keep && start < 0:
			start = p
		case !keep && start >= 0:
			for _, proto := range []Protocol{TCP, UDP} {
				b.add(Range{Proto: proto, First: uint16(start), Last: uint16(p - 1)})
			}
			start = -1
		}
	}
	return b.set()
}

// add sets the bits of every port in r, which must have passed check.
func (b *portBits) add(r Range) {
	row := &b[r.Proto-1]
	for p := uint32(r.First); p <= uint32(r.Last); p++ {
		row[p/64] |= 1 << (p % 64)
	}
}

// set freezes b into a Set, which takes ownership of b.
func (b *portBits) set() Set {
	n := 0
	for _, row := range b {
		for _, w := range row {
			n += bits.OnesCount64(w)
		}
	}
	if n == 0 {
		return Set{}
	}
	return Set{bits: b, n: n}
}

// Contains reports whether port is forwarded for proto.
func (s Set) Contains(proto Protocol, port uint16) bool {
	if s.bits == nil || !proto.valid() {
		return false
	}
	return s.bits[proto-1][port/64]&(1<<(port%64)) != 0
}

// Len returns the number of (protocol, port) pairs in s: a port forwarded
// for both TCP and UDP counts twice.
func (s Set) Len() int { return s.n }

// All yields every (protocol, port) pair in s: TCP ports first, each
// protocol's in increasing order.
func (s Set) All() iter.Seq2[Protocol, uint16] {
	return func(yield func(Protocol, uint16) bool) {
		if s.bits == nil {
			return
		}
		for i, row := range s.bits {
			for wi, w := range row {
				for ; w != 0; w &= w - 1 {
					port := uint16(wi*64 + bits.TrailingZeros64(w))
					if !yield(Protocol(i+1), port) {
						return
					}
				}
			}
		}
	}
}

// Ranges returns s as the fewest ranges that cover it: TCP first, each
// protocol's in increasing order, adjacent ports merged.
func (s Set) Ranges() []Range {
	var rs []Range
	for proto, port := range s.All() {
		if n := len(rs); n > 0 && rs[n-1].Proto == proto && rs[n-1].Last+1 == port {
			rs[n-1].Last = port
			continue
		}
		rs = append(rs, Range{Proto: proto, First: port, Last: port})
	}
	return rs
}

// String renders s canonically in port spec syntax, as Ranges lists it:
// "80/tcp,443/tcp,8000-8100/tcp,53/udp". Parse(s.String()) gives s back.
// The empty set renders as "".
func (s Set) String() string {
	rs := s.Ranges()
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = r.String()
	}
	return strings.Join(parts, ",")
}
