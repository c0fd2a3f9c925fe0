package nat

import (
	"context"
	"errors"
	"net/netip"
	"syscall"
)

// A guest connection whose destination the pod cannot reach fails with an
// ICMP destination unreachable from the gateway, as a router would answer,
// so the guest's connect reports "no route to host" at once; a refused one
// gets the stack's RST ("connection refused"). The ICMP error must quote
// the guest's SYN (its IP header and first 8 bytes of TCP, with the
// sequence number the guest's kernel checks), which the forwarder does not
// keep: handleTCP copies it aside (synQuotes) for forwardTCP.

// unreachable reports whether a dial error means the destination cannot
// be reached (rather than refused the connection).
func unreachable(err error) bool {
	return errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH) ||
		errors.Is(err, syscall.ETIMEDOUT) || errors.Is(err, context.DeadlineExceeded)
}

// sendUnreachable sends the guest at src an ICMP destination unreachable
// (host unreachable; address unreachable in IPv6) quoting its SYN, from
// the gateway.
func (n *NAT) sendUnreachable(src netip.Addr, quote []byte) error {
	return n.errs.hostUnreachable(src, quote)
}
