package capture

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Endpoint is a link endpoint that passes every frame between the stack
// and the link it wraps unchanged, and copies each into the captures
// started on it: frames from the guest as the link delivers them to the
// stack, frames to the guest as the stack hands them to the link (a TSO
// segment of up to 64 KiB as one frame, before the link splits or
// drops it). Frames a link drops before delivering them (too short, a
// bad checksum; see link.Stats) are not captured.
//
// Endpoint sits between the link and the stack (stack.New takes it in
// place of the link), so it sees every frame the guest exchanges with
// masq, DHCP, ARP and NDP included. It is safe for concurrent use.
type Endpoint struct {
	stack.LinkEndpoint // the wrapped link

	// state is what each frame needs: one atomic load per frame, or
	// per batch written.
	state atomic.Pointer[state]
	mu    sync.Mutex // serialises replacing state
}

// state is an immutable snapshot of where frames go; a change replaces it.
type state struct {
	dispatcher stack.NetworkDispatcher // nil when detached
	captures   []*Capture              // nil when capture is off
}

var (
	_ stack.LinkEndpoint      = (*Endpoint)(nil)
	_ stack.GSOEndpoint       = (*Endpoint)(nil)
	_ stack.NetworkDispatcher = (*Endpoint)(nil)
)

// New returns an Endpoint wrapping link, capturing nothing until Start.
// It takes ownership of link as the stack does: the stack's Close
// closes it through the Endpoint.
func New(link stack.LinkEndpoint) *Endpoint {
	e := &Endpoint{LinkEndpoint: link}
	e.state.Store(&state{})
	return e
}

// Attach implements stack.NetworkLinkEndpoint.Attach: the link delivers
// to e, which delivers to d.
func (e *Endpoint) Attach(d stack.NetworkDispatcher) {
	e.mu.Lock()
	e.state.Store(&state{dispatcher: d, captures: e.state.Load().captures})
	e.mu.Unlock()
	if d == nil {
		e.LinkEndpoint.Attach(nil)
		return
	}
	e.LinkEndpoint.Attach(e)
}

// IsAttached implements stack.NetworkLinkEndpoint.IsAttached.
func (e *Endpoint) IsAttached() bool { return e.state.Load().dispatcher != nil }

// DeliverNetworkPacket implements stack.NetworkDispatcher.DeliverNetworkPacket:
// a frame from the guest.
func (e *Endpoint) DeliverNetworkPacket(proto tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	s := e.state.Load()
	if s.captures != nil {
		now := time.Now()
		for _, c := range s.captures {
			c.record(pkt, now)
		}
	}
	if s.dispatcher != nil {
		s.dispatcher.DeliverNetworkPacket(proto, pkt)
	}
}

// DeliverLinkPacket implements stack.NetworkDispatcher.DeliverLinkPacket.
// It is not a frame of the guest link's (gVisor calls it for packet
// sockets), so it is passed on uncaptured.
func (e *Endpoint) DeliverLinkPacket(proto tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	if d := e.state.Load().dispatcher; d != nil {
		d.DeliverLinkPacket(proto, pkt)
	}
}

// WritePackets implements stack.LinkWriter.WritePackets: frames to the
// guest, link headers already added.
func (e *Endpoint) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	if s := e.state.Load(); s.captures != nil {
		now := time.Now() // one reading per batch: the stack writes it at once
		for _, pkt := range pkts.AsSlice() {
			for _, c := range s.captures {
				c.record(pkt, now)
			}
		}
	}
	return e.LinkEndpoint.WritePackets(pkts)
}

// GSOMaxSize implements stack.GSOEndpoint.GSOMaxSize: the wrapped link's.
func (e *Endpoint) GSOMaxSize() uint32 {
	if g, ok := e.LinkEndpoint.(stack.GSOEndpoint); ok {
		return g.GSOMaxSize()
	}
	return 0
}

// SupportedGSO implements stack.GSOEndpoint.SupportedGSO: the wrapped link's.
func (e *Endpoint) SupportedGSO() stack.SupportedGSO {
	if g, ok := e.LinkEndpoint.(stack.GSOEndpoint); ok {
		return g.SupportedGSO()
	}
	return stack.GSONotSupported
}

// add makes c see every frame from now on.
func (e *Endpoint) add(c *Capture) {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.state.Load()
	e.state.Store(&state{dispatcher: s.dispatcher, captures: append(slices.Clip(s.captures), c)})
}

// remove stops handing frames to c; a frame being recorded on another
// goroutine may still reach it.
func (e *Endpoint) remove(c *Capture) {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.state.Load()
	left := slices.DeleteFunc(slices.Clone(s.captures), func(x *Capture) bool { return x == c })
	if len(left) == 0 {
		left = nil // capture off: the frame path's nil check
	}
	e.state.Store(&state{dispatcher: s.dispatcher, captures: left})
}
