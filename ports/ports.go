// Package ports owns the set of pod ports masq forwards to the guest: the
// port spec users write (--ports, a KubeVirt manifest's ports), the
// immutable Set it parses into, and the rules every forwarded port obeys
// (1 to 65535, never libvirt's migration ports). It is a leaf: it imports
// no netstack, so reading a configuration does not link one.
package ports

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// LibvirtMigration1 and LibvirtMigration2 are the ports libvirt uses for
// live migration inside the launcher pod. They are never forwarded to the
// guest, whatever the port list says.
const (
	LibvirtMigration1 = 49152
	LibvirtMigration2 = 49153
)

// Reserved reports whether port may never be forwarded to the guest: 0,
// which is no port, and libvirt's migration ports.
func Reserved(port uint16) bool {
	return port == 0 || port == LibvirtMigration1 || port == LibvirtMigration2
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

// Range is the ports First..Last, both included, of one protocol.
type Range struct {
	Proto       Protocol
	First, Last uint16
}

// String renders r in port spec syntax: "80/tcp" or "8000-8100/udp".
func (r Range) String() string {
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
func (r Range) check() error {
	switch {
	case !r.Proto.valid():
		return fmt.Errorf("unknown protocol %d: allowed are tcp, udp or tcp+udp", r.Proto)
	case r.First == 0 || r.Last == 0:
		return errors.New("port 0 is not a port: allowed are 1 to 65535")
	case r.First > r.Last:
		return fmt.Errorf("range %d-%d is reversed: write the lower port first (%d-%d)", r.First, r.Last, r.Last, r.First)
	case r.First <= LibvirtMigration2 && r.Last >= LibvirtMigration1:
		return reservedError(r.First, r.Last)
	}
	return nil
}

// reservedError explains why first..last, which overlaps libvirt's
// migration ports, is refused, and how to split it.
func reservedError(first, last uint16) error {
	msg := fmt.Sprintf("ports %d and %d belong to libvirt's migration and are never forwarded",
		LibvirtMigration1, LibvirtMigration2)
	var parts []string
	if first < LibvirtMigration1 {
		parts = append(parts, numbers(first, LibvirtMigration1-1))
	}
	if last > LibvirtMigration2 {
		parts = append(parts, numbers(LibvirtMigration2+1, last))
	}
	if len(parts) > 0 {
		msg += "; leave them out: " + strings.Join(parts, ",")
	}
	return errors.New(msg)
}
