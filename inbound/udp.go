package inbound

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/masqnet/masq/flowtable"
	"github.com/masqnet/masq/stack"
)

// udpFlows holds the flows of clients writing to a forwarded UDP port:
// each client address and port is a flow, whose datagrams reach the guest
// from the client's address, and whose guest replies leave through the
// port's pod socket, so the client sees them come from the port it wrote
// to.
type udpFlows struct {
	cfg    Config
	st     *stack.Stack
	stats  *counters
	active atomic.Int32 // len(flows), read on the packet path without the lock

	// mu is read-locked by the two data paths (client to guest on the
	// poller, guest to client on the link's reader) across their sends,
	// so they never wait for each other, and write-locked only to add,
	// expire or close flows: a flow's sender and socket stay valid while
	// a send holds the read lock.
	mu     sync.RWMutex
	flows  map[inKey]*inFlow // guarded by mu
	closed bool              // guarded by mu
}

// inKey names an inbound flow as the guest's replies address it: from the
// guest's port, to the client as the guest sees it.
type inKey struct {
	port uint16
	seen netip.AddrPort
}

type inFlow struct {
	sock       *inSocket
	client     netip.AddrPort // the real client, for replies
	sender     *stack.Sender  // to the guest, from seen
	flow       *flowtable.Entry
	lastActive atomic.Int64 // Config.Now in Unix ns
}

func newUDPFlows(cfg Config, st *stack.Stack, stats *counters) *udpFlows {
	return &udpFlows{cfg: cfg, st: st, stats: stats, flows: make(map[inKey]*inFlow)}
}

// readUDP drains s, forwarding each datagram to the guest. It runs on the
// poller goroutine, which owns f.buf.
func (f *Forwarder) readUDP(s *inSocket) {
	for {
		nr, client, err := recvFrom(s.fd, f.buf, &f.rsa)
		if err != nil {
			return
		}
		f.udp.fromClient(s, client, f.buf[:nr])
	}
}

// fromClient writes a client's datagram to the guest's port.
func (u *udpFlows) fromClient(s *inSocket, client netip.AddrPort, payload []byte) {
	seen := u.cfg.seenFrom(client)
	key := inKey{port: s.port, seen: seen}
	u.mu.RLock()
	if f := u.flows[key]; f != nil && !u.closed {
		now := u.cfg.Now().UnixNano()
		f.lastActive.Store(now)
		f.flow.ToGuest.Add(len(payload), now) // before the send: what the guest saw is counted
		f.sender.WriteUDP(seen.Port(), s.port, payload)
		u.mu.RUnlock()
		return
	}
	u.mu.RUnlock()
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return
	}
	f := u.flows[key]
	if f == nil {
		if len(u.flows) >= u.cfg.MaxUDPFlows {
			u.stats.udpLimited.Add(1)
			return
		}
		sender, err := u.st.NewSender(seen.Addr(), u.cfg.guestFor(seen.Addr()))
		if err != nil {
			return
		}
		f = &inFlow{sock: s, client: client, sender: sender}
		f.flow = u.cfg.Flows.Open(flowtable.UDP, flowtable.Inbound,
			netip.AddrPortFrom(u.cfg.guestFor(seen.Addr()), s.port), client)
		f.flow.SetLocal(s.local)
		u.flows[key] = f
		u.active.Store(int32(len(u.flows)))
		u.stats.udp.Add(1)
	}
	now := u.cfg.Now().UnixNano()
	f.lastActive.Store(now)
	f.flow.ToGuest.Add(len(payload), now)
	f.sender.WriteUDP(seen.Port(), s.port, payload) // a flow's first datagram only
}

// toClient sends a guest datagram from src to dst through the forwarded
// port's pod socket when it answers an inbound flow, and reports whether
// it did. It runs on the packet path.
func (u *udpFlows) toClient(src, dst netip.AddrPort, payload []byte) bool {
	if u.active.Load() == 0 {
		return false
	}
	u.mu.RLock()
	defer u.mu.RUnlock()
	f := u.flows[inKey{port: src.Port(), seen: dst}]
	if f == nil || u.closed {
		return false
	}
	now := u.cfg.Now().UnixNano()
	f.lastActive.Store(now)
	f.flow.FromGuest.Add(len(payload), now) // before the send: what the client saw is counted
	if err := sendTo(f.sock.fd, payload, f.client, f.sock.v6()); err != nil {
		u.stats.udpSendFailed.Add(1)
	}
	return true
}

// expire ends flows idle for longer than the UDP timeout at now.
func (u *udpFlows) expire(now time.Time) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	ended := 0
	for k, f := range u.flows {
		if time.Duration(now.UnixNano()-f.lastActive.Load()) > u.cfg.UDPIdleTimeout {
			f.sender.Close()
			u.cfg.Flows.Close(f.flow)
			delete(u.flows, k)
			ended++
		}
	}
	u.active.Store(int32(len(u.flows)))
	return ended
}

// close ends every flow; later datagrams are dropped.
func (u *udpFlows) close() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.closed = true
	for k, f := range u.flows {
		f.sender.Close()
		u.cfg.Flows.Close(f.flow)
		delete(u.flows, k)
	}
	u.active.Store(0)
}

// FromGuest is offered each UDP datagram the guest sends that no socket
// of masq's took, before the outbound flows see it: when it answers an
// inbound flow (from the forwarded port, to the client as the guest sees
// it), it leaves through the port's pod socket and FromGuest reports
// true. It runs on the packet path and never blocks.
func (f *Forwarder) FromGuest(src, dst netip.AddrPort, payload []byte) bool {
	if !f.isGuest(src.Addr()) {
		return false
	}
	return f.udp.toClient(src, dst, payload)
}

// isGuest reports whether a is one of the guest's addresses.
func (f *Forwarder) isGuest(a netip.Addr) bool {
	return a.IsValid() && (a == f.cfg.Guest4 || a == f.cfg.Guest6)
}
