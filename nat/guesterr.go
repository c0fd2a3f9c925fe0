package nat

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/masqnet/masq/stack"
)

// guestErrors sends ICMP errors to the guest: the ones the pod's datagrams
// drew, relayed, and those masq answers as the guest's first router (time
// exceeded, unreachable). Every error quotes the guest's packet that drew
// it (its IP header and first 8 bytes of transport), which is how the
// guest's kernel finds the socket to fail.
type guestErrors struct {
	st      *stack.Stack
	gateway func(guest netip.Addr) netip.Addr
	now     func() time.Time
	bucket  *tokenBucket // errorRate, errorBurst
	sent    *atomic.Uint64
	limited *atomic.Uint64 // errors not sent over the rate
}

// errLimited says an ICMP error was not sent over the rate.
var errLimited = errors.New("icmp error rate exceeded")

// send sends the guest at to an ICMP error of to's family from the
// address from, quoting quote, unless over the rate. rest is the ICMP
// header's second word (the next hop's MTU of "fragmentation needed" and
// "packet too big"; 0 for the others).
func (g *guestErrors) send(from, to netip.Addr, typ, code uint8, rest uint32, quote []byte) error {
	if !g.bucket.allow(g.now()) {
		g.limited.Add(1)
		return errLimited
	}
	msg := make([]byte, header.ICMPv4MinimumSize, header.ICMPv4MinimumSize+len(quote)) // the same 8 bytes in ICMPv6
	msg[0], msg[1] = typ, code
	binary.BigEndian.PutUint32(msg[4:8], rest)
	msg = append(msg, quote...)
	s, err := g.st.NewSender(from, to)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := s.WriteICMP(msg); err != nil {
		return err
	}
	g.sent.Add(1)
	return nil
}

// timeExceeded tells the guest at to, from its gateway, that the packet
// quoted ran out of TTL (hop limit) there.
func (g *guestErrors) timeExceeded(to netip.Addr, quote []byte) error {
	typ, code := uint8(header.ICMPv4TimeExceeded), uint8(header.ICMPv4TTLExceeded)
	if to.Is6() {
		typ, code = uint8(header.ICMPv6TimeExceeded), uint8(header.ICMPv6HopLimitExceeded)
	}
	return g.send(g.gateway(to), to, typ, code, 0, quote)
}

// netUnreachable tells the guest at to, from its gateway, that the pod
// has no route toward the destination of the packet quoted (network
// unreachable; "no route to destination" in IPv6).
func (g *guestErrors) netUnreachable(to netip.Addr, quote []byte) error {
	typ, code := uint8(header.ICMPv4DstUnreachable), uint8(header.ICMPv4NetUnreachable)
	if to.Is6() {
		typ, code = uint8(header.ICMPv6DstUnreachable), uint8(header.ICMPv6NetworkUnreachable)
	}
	return g.send(g.gateway(to), to, typ, code, 0, quote)
}

// hostUnreachable tells the guest at to, from its gateway, that the
// destination of the packet quoted cannot be reached (host unreachable;
// address unreachable in IPv6).
func (g *guestErrors) hostUnreachable(to netip.Addr, quote []byte) error {
	typ, code := uint8(header.ICMPv4DstUnreachable), uint8(header.ICMPv4HostUnreachable)
	if to.Is6() {
		typ, code = uint8(header.ICMPv6DstUnreachable), uint8(header.ICMPv6AddressUnreachable)
	}
	return g.send(g.gateway(to), to, typ, code, 0, quote)
}

// guestError returns the ICMP type, code and second header word, in the
// guest's family (v4 when guest4), that relay e; false for errors not
// relayed. Relayed: destination unreachable, time exceeded and, within a
// family, "fragmentation needed" / "packet too big" with the next hop's
// MTU, which the pod's own stack also reports (a local EMSGSIZE: the
// datagram was larger than the path MTU it knows, and it does not
// fragment a datagram the guest sent with DF). Within a family the type
// and code are kept; across (a guest IPv6 flow the policy maps to IPv4)
// port unreachable and time exceeded keep their meaning, every other
// unreachable becomes host (address) unreachable, and the MTU errors are
// not relayed (the pod fragments such a flow's datagrams).
func guestError(e PodError, guest4 bool) (typ, code uint8, rest uint32, ok bool) {
	var unreach, port, exceeded, tooBig bool
	switch e.Origin {
	case OriginLocal:
		tooBig = e.Errno == syscall.EMSGSIZE && e.Info != 0
	case OriginICMP4:
		switch header.ICMPv4Type(e.Type) {
		case header.ICMPv4DstUnreachable:
			if e.Code == uint8(header.ICMPv4FragmentationNeeded) {
				if !guest4 {
					return 0, 0, 0, false
				}
				return e.Type, e.Code, e.Info & 0xffff, true
			}
			if guest4 {
				return e.Type, e.Code, 0, true
			}
			unreach, port = true, e.Code == uint8(header.ICMPv4PortUnreachable)
		case header.ICMPv4TimeExceeded:
			if guest4 {
				return e.Type, e.Code, 0, true
			}
			exceeded = true
		}
	case OriginICMP6:
		switch header.ICMPv6Type(e.Type) {
		case header.ICMPv6PacketTooBig:
			if guest4 {
				return 0, 0, 0, false
			}
			return e.Type, e.Code, e.Info, true
		case header.ICMPv6DstUnreachable:
			if !guest4 {
				return e.Type, e.Code, 0, true
			}
			unreach, port = true, e.Code == uint8(header.ICMPv6PortUnreachable)
		case header.ICMPv6TimeExceeded:
			if !guest4 {
				return e.Type, e.Code, 0, true
			}
			exceeded = true
		}
	}
	switch {
	case tooBig && guest4:
		return uint8(header.ICMPv4DstUnreachable), uint8(header.ICMPv4FragmentationNeeded), e.Info & 0xffff, true
	case tooBig:
		return uint8(header.ICMPv6PacketTooBig), 0, e.Info, true
	case exceeded && guest4:
		return uint8(header.ICMPv4TimeExceeded), uint8(header.ICMPv4TTLExceeded), 0, true
	case exceeded:
		return uint8(header.ICMPv6TimeExceeded), uint8(header.ICMPv6HopLimitExceeded), 0, true
	case port && guest4:
		return uint8(header.ICMPv4DstUnreachable), uint8(header.ICMPv4PortUnreachable), 0, true
	case port:
		return uint8(header.ICMPv6DstUnreachable), uint8(header.ICMPv6PortUnreachable), 0, true
	case unreach && guest4:
		return uint8(header.ICMPv4DstUnreachable), uint8(header.ICMPv4HostUnreachable), 0, true
	case unreach:
		return uint8(header.ICMPv6DstUnreachable), uint8(header.ICMPv6AddressUnreachable), 0, true
	}
	return 0, 0, 0, false
}

// maxQuote is the largest quote: an IPv4 header with options (60 bytes)
// and 8 of transport.
const maxQuote = 60 + quotedTransportBytes

// quoteOf returns the part of a guest packet an ICMP error quotes: its
// network header and the first 8 bytes of transport (fewer if it has
// fewer), appended to buf[:0].
func quoteOf(buf, network, transport []byte) []byte {
	if len(transport) > quotedTransportBytes {
		transport = transport[:quotedTransportBytes]
	}
	return append(append(buf[:0], network...), transport...)
}

// guestTTL returns the TTL (hop limit) of a guest packet's network header.
func guestTTL(network []byte) uint8 {
	if len(network) >= header.IPv6MinimumSize && header.IPVersion(network) == header.IPv6Version {
		return header.IPv6(network).HopLimit()
	}
	if len(network) >= header.IPv4MinimumSize {
		return header.IPv4(network).TTL()
	}
	return 0
}

// dontFragment reports whether a quoted guest packet is IPv4 with the DF
// bit: the pod then sends it with path MTU discovery on and never
// fragments it, as a router would not, and a path MTU too small for it
// comes back to the guest as "fragmentation needed".
func dontFragment(quote []byte) bool {
	return len(quote) >= header.IPv4MinimumSize && header.IPVersion(quote) == header.IPv4Version &&
		header.IPv4(quote).Flags()&header.IPv4FlagDontFragment != 0
}

// errorSource returns the address an ICMP error e about a guest's packet
// comes from, to the guest at guest: seen (the destination as the guest
// addressed it) when the destination (podDst, as the pod sent to it)
// reported it; the router that reported it; the gateway gw when the
// pod's own stack did (a local error, or one from the pod's addresses) or
// the reporter is not of the guest's family, as a kernel NAT, the guest's
// router, answers from its own address.
func errorSource(e PodError, podDst, seen, gw, guest netip.Addr) netip.Addr {
	switch reporter := e.From.Unmap(); {
	case e.Origin == OriginLocal:
	case reporter == podDst:
		return seen
	case reporter.IsValid() && reporter.Is4() == guest.Is4() && reporter != guest && !isLocalAddr(reporter):
		return reporter
	}
	return gw
}

// isLocalAddr reports whether a is one of the pod's own addresses (the
// pod's stack reports errors from them: a neighbor that never answered,
// a route rejected). It asks the kernel each time: errors are few, and a
// router's are looked up only once per error.
func isLocalAddr(a netip.Addr) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, ia := range addrs {
		if p, ok := ia.(*net.IPNet); ok {
			if pa, ok := netip.AddrFromSlice(p.IP); ok && pa.Unmap() == a {
				return true
			}
		}
	}
	return false
}
