package nat

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"syscall"
)

// A guest datagram the pod's socket sends may draw an ICMP error: port
// unreachable from its destination, time exceeded or unreachable from a
// router on the way. The pod's kernel queues it on the socket
// (IP_RECVERR); the flow relays it to the guest as the same error about
// the guest's own datagram, from the address that reported it, so the
// guest's socket fails at once (ECONNREFUSED) and its traceroute sees
// every hop. The ICMP error must quote the guest's datagram, which the pod
// socket no longer knows: the flow keeps the last quote per destination.

// quoteKey is the key of the quote of a datagram toward dst whose payload
// starts with head: dst for UDP; for ICMP echo, dst's address and the
// request's sequence number in place of the port, since a flow (one echo
// identifier) has several requests in flight (traceroute -I sends them
// all at once) and an error must quote its own.
func (f *datagramFlow) quoteKey(dst netip.AddrPort, head []byte) netip.AddrPort {
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	if !f.env.proto.echo() {
		return dst
	}
	var seq uint16
	if len(head) >= 8 {
		seq = binary.BigEndian.Uint16(head[6:8])
	}
	return netip.AddrPortFrom(dst.Addr(), seq)
}

// keepQuoteLocked keeps quote as the last datagram's under key, reusing
// its buffer; f.mu must be held.
func (f *datagramFlow) keepQuoteLocked(dst netip.AddrPort, quote []byte) {
	old, ok := f.quotes[dst]
	if !ok && len(f.quotes) >= maxFlowQuotes {
		for k := range f.quotes { // any one: errors come back soon or never
			delete(f.quotes, k)
			break
		}
	}
	if f.quotes == nil {
		f.quotes = make(map[netip.AddrPort][]byte, 1)
	}
	f.quotes[dst] = append(old[:0], quote...)
}

// quote returns a copy of the quote kept under key, nil if none. anySeq
// is for an echo flow's error that does not say which request drew it (a
// local error quotes no payload): any of the requests toward key's
// address will do, since they differ in their sequence number only.
func (f *datagramFlow) quote(key netip.AddrPort, anySeq bool) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	if q, ok := f.quotes[key]; ok || !anySeq {
		return append([]byte(nil), q...)
	}
	for k, q := range f.quotes {
		if k.Addr() == key.Addr() {
			return append([]byte(nil), q...)
		}
	}
	return nil
}

// isPodError reports whether a pod socket's read failed for an error its
// datagrams drew (IP_RECVERR), not for the socket's end.
func isPodError(err error) bool {
	var errno syscall.Errno
	return errors.As(err, &errno) && errno != syscall.EBADF && errno != syscall.EINVAL
}

// relayErrors relays every error queued on the flow's socket to the
// guest. It reports false when the socket queues none (not an ErrorConn).
func (f *datagramFlow) relayErrors() bool {
	ec, ok := f.conn.(ErrorConn)
	if !ok {
		return false
	}
	for {
		e, ok := ec.ReadPodError()
		if !ok {
			return true
		}
		f.relayError(e)
	}
}

// relayError sends the guest the ICMP error e, about a datagram of the
// flow, from the address that reported it: the destination as the guest
// addressed it when it reported itself, the router otherwise; the gateway
// when the pod's own stack reported it (a local error, or an ICMP error
// from one of the pod's addresses) or the reporter is not of the guest's
// family, as a kernel NAT, the guest's router, would answer from its own
// address.
func (f *datagramFlow) relayError(e PodError) {
	key := f.quoteKey(e.Dst, e.Head)
	dst := netip.AddrPortFrom(e.Dst.Addr().Unmap(), e.Dst.Port())
	guest := f.src.Addr()
	typ, code, rest, ok := guestError(e, guest.Is4())
	if !ok {
		return
	}
	quote := f.quote(key, f.env.proto.echo() && len(e.Head) < 8)
	seen, known := f.peer(dst)
	if len(quote) == 0 || !known {
		return // not a datagram of the flow's, or its quote was pushed out
	}
	from := errorSource(e, dst.Addr(), seen.Addr(), f.env.errs.gateway(guest), guest)
	if err := f.env.errs.send(from, guest, typ, code, rest, quote); err != nil {
		f.env.log.Debug("icmp error to guest", "from", from, "err", err)
	}
}
