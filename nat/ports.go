package nat

import (
	"errors"
	"fmt"
	"iter"
	"math/bits"
	"strconv"
	"strings"
)

// LibvirtMigrationPort1 and LibvirtMigrationPort2 are the ports libvirt
// uses for live migration inside the launcher pod. They are never
// forwarded to the guest, whatever the port list says.
const (
	LibvirtMigrationPort1 = 49152
	LibvirtMigrationPort2 = 49153
)

// Reserved reports whether port may never be forwarded to the guest: 0,
// which is no port, and libvirt's migration ports.
func Reserved(port uint16) bool {
	return port == 0 || port == LibvirtMigrationPort1 || port == LibvirtMigrationPort2
}

// Protocol is a transport protocol a port is forwarded for. The zero value
// is no protocol.
type Protocol uint8

// The protocols a port can be forwarded for.
const (
	TCP Protocol = 1 + iota
	UDP
)

// numProtocols is the number of valid Protocol values.
const numProtocols = 2

// String returns "tcp" or "udp", as written in a port spec.
func (p Protocol) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	}
	return "Protocol(" + strconv.Itoa(int(p)) + ")"
}

// valid reports whether p is TCP or UDP.
func (p Protocol) valid() bool { return p == TCP || p == UDP }

// PortRange is the ports First..Last, both included, of one protocol.
type PortRange struct {
	Proto       Protocol
	First, Last uint16
}

// String renders r in port spec syntax: "80/tcp" or "8000-8100/udp".
func (r PortRange) String() string {
	return numbers(r.First, r.Last) + "/" + r.Proto.String()
}

// numbers renders first..last without a protocol: "80" or "8000-8100".
func numbers(first, last uint16) string {
	if first == last {
		return strconv.Itoa(int(first))
	}
	return strconv.Itoa(int(first)) + "-" + strconv.Itoa(int(last))
}

// check returns why r may not be forwarded, or nil.
func (r PortRange) check() error {
	switch {
	case !r.Proto.valid():
		return fmt.Errorf("unknown protocol %d: allowed are tcp, udp or tcp+udp", r.Proto)
	case r.First == 0 || r.Last == 0:
		return errors.New("port 0 is not a port: allowed are 1 to 65535")
	case r.First > r.Last:
		return fmt.Errorf("range %d-%d is reversed: write the lower port first (%d-%d)", r.First, r.Last, r.Last, r.First)
	case r.First <= LibvirtMigrationPort2 && r.Last >= LibvirtMigrationPort1:
		return reservedError(r.First, r.Last)
	}
	return nil
}

// reservedError explains why first..last, which overlaps libvirt's
// migration ports, is refused, and how to split it.
func reservedError(first, last uint16) error {
	msg := fmt.Sprintf("ports %d and %d belong to libvirt's migration and are never forwarded",
		LibvirtMigrationPort1, LibvirtMigrationPort2)
	var parts []string
	if first < LibvirtMigrationPort1 {
		parts = append(parts, numbers(first, LibvirtMigrationPort1-1))
	}
	if last > LibvirtMigrationPort2 {
		parts = append(parts, numbers(LibvirtMigrationPort2+1, last))
	}
	if len(parts) > 0 {
		msg += "; leave them out: " + strings.Join(parts, ",")
	}
	return errors.New(msg)
}

// portBits has one bit per port and protocol: word i of row p holds ports
// 64i..64i+63 of Protocol p+1. Two rows of 65536 bits are 16 KiB.
type portBits [numProtocols][65536 / 64]uint64

// Ports is a set of (protocol, port) pairs to forward. It is immutable
// once made, so copies share their storage and any number of goroutines
// may call its methods at once; Contains is O(1). The zero value is the
// empty set. Make one with ParsePorts or NewPorts.
type Ports struct {
	bits *portBits // nil for the empty set; never written after construction
	n    int       // number of pairs in bits
}

// NewPorts returns the set of every port in ranges. A range may overlap
// another. It is an error for a range to hold port 0, a reserved port (see
// Reserved), an unknown protocol, or to have First > Last.
func NewPorts(ranges ...PortRange) (Ports, error) {
	b := new(portBits)
	for _, r := range ranges {
		if err := r.check(); err != nil {
			return Ports{}, fmt.Errorf("port range %s: %w", r, err)
		}
		b.add(r)
	}
	return b.ports(), nil
}

// add sets the bits of every port in r, which must have passed check.
func (b *portBits) add(r PortRange) {
	row := &b[r.Proto-1]
	for p := uint32(r.First); p <= uint32(r.Last); p++ {
		row[p/64] |= 1 << (p % 64)
	}
}

// ports freezes b into a Ports, which takes ownership of b.
func (b *portBits) ports() Ports {
	n := 0
	for _, row := range b {
		for _, w := range row {
			n += bits.OnesCount64(w)
		}
	}
	if n == 0 {
		return Ports{}
	}
	return Ports{bits: b, n: n}
}

// Contains reports whether port is forwarded for proto.
func (s Ports) Contains(proto Protocol, port uint16) bool {
	if s.bits == nil || !proto.valid() {
		return false
	}
	return s.bits[proto-1][port/64]&(1<<(port%64)) != 0
}

// Len returns the number of (protocol, port) pairs in s: a port forwarded
// for both TCP and UDP counts twice.
func (s Ports) Len() int { return s.n }

// All yields every (protocol, port) pair in s: TCP ports first, each
// protocol's in increasing order.
func (s Ports) All() iter.Seq2[Protocol, uint16] {
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
func (s Ports) Ranges() []PortRange {
	var rs []PortRange
	for proto, port := range s.All() {
		if n := len(rs); n > 0 && rs[n-1].Proto == proto && rs[n-1].Last+1 == port {
			rs[n-1].Last = port
			continue
		}
		rs = append(rs, PortRange{Proto: proto, First: port, Last: port})
	}
	return rs
}

// String renders s canonically in port spec syntax, as Ranges lists it:
// "80/tcp,443/tcp,8000-8100/tcp,53/udp". ParsePorts(s.String()) gives s
// back. The empty set renders as "".
func (s Ports) String() string {
	rs := s.Ranges()
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = r.String()
	}
	return strings.Join(parts, ",")
}

// portSpecSyntax says what a port spec item may be, for error messages.
const portSpecSyntax = "want PORT or FIRST-LAST (1 to 65535), optionally followed by /tcp, /udp or /tcp+udp"

// ParsePorts parses a port spec such as "80,443/tcp,53/udp,8000-8100,
// 5353/tcp+udp": comma-separated items, each a port or a range FIRST-LAST,
// optionally followed by /tcp, /udp or /tcp+udp (or /udp+tcp), in any
// case. An item without a protocol is TCP, as in KubeVirt. White space
// around items is allowed; items may overlap. An error quotes the first
// bad item and says what is allowed. Ports 0, 49152 and 49153 (see
// Reserved) are refused.
//
// The empty spec is an error: "forward every port" is the caller's
// decision, made before calling ParsePorts.
func ParsePorts(spec string) (Ports, error) {
	if strings.TrimSpace(spec) == "" {
		return Ports{}, errors.New("empty port list: name at least one port, or give no list to forward every port")
	}
	b := new(portBits)
	for item := range strings.SplitSeq(spec, ",") {
		ranges, err := parseItem(strings.TrimSpace(item))
		if err != nil {
			return Ports{}, fmt.Errorf("port spec item %q: %w", item, err)
		}
		for _, r := range ranges {
			b.add(r)
		}
	}
	return b.ports(), nil
}

// parseItem parses one item of a port spec into one range per protocol.
func parseItem(item string) ([]PortRange, error) {
	if item == "" {
		return nil, errors.New("empty item (two commas in a row, or a comma at an end): " + portSpecSyntax)
	}
	ports, proto, hasProto := strings.Cut(item, "/")
	protos := []Protocol{TCP}
	if hasProto {
		var err error
		if protos, err = parseProtocols(proto); err != nil {
			return nil, err
		}
	}
	first, last, err := parseRange(ports)
	if err != nil {
		return nil, err
	}
	ranges := make([]PortRange, len(protos))
	for i, p := range protos {
		ranges[i] = PortRange{Proto: p, First: first, Last: last}
		if err := ranges[i].check(); err != nil {
			return nil, err
		}
	}
	return ranges, nil
}

// parseProtocols parses what follows the '/' of an item.
func parseProtocols(s string) ([]Protocol, error) {
	switch strings.ToLower(s) {
	case "tcp":
		return []Protocol{TCP}, nil
	case "udp":
		return []Protocol{UDP}, nil
	case "tcp+udp", "udp+tcp":
		return []Protocol{TCP, UDP}, nil
	}
	return nil, fmt.Errorf("unknown protocol %q: allowed are tcp, udp or tcp+udp", s)
}

// parseRange parses "PORT" or "FIRST-LAST".
func parseRange(s string) (first, last uint16, err error) {
	a, b, isRange := strings.Cut(s, "-")
	if first, err = parsePort(a); err != nil {
		return 0, 0, err
	}
	if !isRange {
		return first, first, nil
	}
	if last, err = parsePort(b); err != nil {
		return 0, 0, err
	}
	return first, last, nil
}

// parsePort parses a decimal port number, 1 to 65535.
func parsePort(s string) (uint16, error) {
	if s == "" || strings.Trim(s, "0123456789") != "" {
		return 0, fmt.Errorf("%q is not a port number: %s", s, portSpecSyntax)
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("port %s out of range: allowed are 1 to 65535", s)
	}
	return uint16(n), nil
}
