package memguest

import (
	"bytes"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// ICMPWatch sees a copy of every ICMP message of one family the guest's
// stack receives (as a raw socket would), so a test can check what masq
// sent the guest: the type, code, second header word (an MTU) and source
// of an error, and what it quotes.
type ICMPWatch struct {
	ep    tcpip.Endpoint
	wq    waiter.Queue
	entry waiter.Entry
	ready chan struct{}
	v6    bool
}

// WatchICMP starts watching the guest's ICMP (ICMPv6 when v6) messages;
// the watch ends with the test.
func (g *Guest) WatchICMP(tb testing.TB, v6 bool) *ICMPWatch {
	tb.Helper()
	w := &ICMPWatch{v6: v6}
	transport, network := icmp.ProtocolNumber4, ipv4.ProtocolNumber
	if v6 {
		transport, network = icmp.ProtocolNumber6, ipv6.ProtocolNumber
	}
	ep, err := g.Stack.NewRawEndpoint(transport, network, &w.wq, true)
	if err != nil {
		tb.Fatalf("raw icmp endpoint: %s", err)
	}
	w.entry, w.ready = waiter.NewChannelEntry(waiter.ReadableEvents)
	w.wq.EventRegister(&w.entry)
	w.ep = ep
	tb.Cleanup(func() {
		w.wq.EventUnregister(&w.entry)
		ep.Close()
	})
	return w
}

// ICMPMessage is one ICMP message the guest received.
type ICMPMessage struct {
	// From is its source address.
	From netip.Addr
	// Type and Code are its ICMP type and code.
	Type, Code uint8
	// Rest is its header's second word (the MTU of "fragmentation
	// needed" and "packet too big").
	Rest uint32
	// Body is what follows the 8-byte header: for an error, the quote.
	Body []byte
}

// Next returns the next message the guest received whose type is one of
// types (any when none), waiting up to timeout.
func (w *ICMPWatch) Next(timeout time.Duration, types ...uint8) (ICMPMessage, error) {
	deadline := time.Now().Add(timeout)
	for {
		var buf bytes.Buffer
		res, err := w.ep.Read(&buf, tcpip.ReadOptions{NeedRemoteAddr: true})
		if err == nil {
			m, ok := w.parse(buf.Bytes(), res.RemoteAddr.Addr)
			if ok && (len(types) == 0 || slices.Contains(types, m.Type)) {
				return m, nil
			}
			continue
		}
		if _, ok := err.(*tcpip.ErrWouldBlock); !ok {
			return ICMPMessage{}, fmt.Errorf("read icmp: %s", err)
		}
		left := time.Until(deadline)
		if left <= 0 {
			return ICMPMessage{}, fmt.Errorf("no icmp message of types %v in %v", types, timeout)
		}
		select {
		case <-w.ready:
		case <-time.After(min(left, 50*time.Millisecond)):
		}
	}
}

// parse reads a message as the raw endpoint gives it: IPv4 with its IP
// header, IPv6 without.
func (w *ICMPWatch) parse(b []byte, from tcpip.Address) (ICMPMessage, bool) {
	src, _ := netip.AddrFromSlice(from.AsSlice())
	if !w.v6 && len(b) >= header.IPv4MinimumSize && header.IPVersion(b) == header.IPv4Version {
		ip := header.IPv4(b)
		src = netip.AddrFrom4(ip.SourceAddress().As4())
		b = b[ip.HeaderLength():]
	}
	if len(b) < header.ICMPv4MinimumSize {
		return ICMPMessage{}, false
	}
	return ICMPMessage{From: src, Type: b[0], Code: b[1],
		Rest: uint32(b[4])<<24 | uint32(b[5])<<16 | uint32(b[6])<<8 | uint32(b[7]),
		Body: append([]byte(nil), b[8:]...)}, true
}
