package nat

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/masqnet/masq/stack"
)

// inboundUDP holds the flows of clients writing to a forwarded UDP port:
// each client address and port is a flow, whose datagrams reach the guest
// from the client's address, and whose guest replies leave through the
// port's pod socket, so the client sees them come from the port it wrote
// to.
type inboundUDP struct {
	n      *NAT
	active atomic.Int32 // len(flows), read on the packet path without the lock

	mu     sync.Mutex
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
	lastActive int64          // Config.Now in Unix ns; guarded by inboundUDP.mu
}

func newInboundUDP(n *NAT) *inboundUDP {
	return &inboundUDP{n: n, flows: make(map[inKey]*inFlow)}
}

// readUDP drains s, forwarding each datagram to the guest. It runs on the
// poller goroutine, which owns in.buf.
func (in *inbound) readUDP(s *inSocket) {
	for {
		nr, client, err := recvFrom(s.fd, in.buf, &in.rsa)
		if err != nil {
			return
		}
		in.udp.fromClient(s, client, in.buf[:nr])
	}
}

// fromClient writes a client's datagram to the guest's port.
func (u *inboundUDP) fromClient(s *inSocket, client netip.AddrPort, payload []byte) {
	seen := u.n.cfg.Policy.seenFrom(client)
	key := inKey{port: s.port, seen: seen}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return
	}
	f := u.flows[key]
	if f == nil {
		if len(u.flows) >= u.n.cfg.MaxUDPFlows {
			u.n.stats.udpLimited.Add(1)
			return
		}
		sender, err := u.n.st.NewSender(seen.Addr(), u.n.cfg.Policy.guestOf(seen.Addr().Is6()))
		if err != nil {
			return
		}
		f = &inFlow{sock: s, client: client, sender: sender}
		u.flows[key] = f
		u.active.Store(int32(len(u.flows)))
		u.n.stats.inboundUDP.Add(1)
	}
	f.lastActive = u.n.cfg.Now().UnixNano()
	f.sender.WriteUDP(seen.Port(), s.port, payload)
}

// toClient sends a guest datagram from src to dst through the forwarded
// port's pod socket when it answers an inbound flow, and reports whether
// it did. It runs on the packet path.
func (u *inboundUDP) toClient(src, dst netip.AddrPort, payload []byte) bool {
	if u.active.Load() == 0 {
		return false
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	f := u.flows[inKey{port: src.Port(), seen: dst}]
	if f == nil || u.closed {
		return false
	}
	f.lastActive = u.n.cfg.Now().UnixNano()
	if err := sendTo(f.sock.fd, payload, f.client, f.sock.v6()); err != nil {
		u.n.stats.udpSendFailed.Add(1)
	}
	return true
}

// expire ends flows idle for longer than the UDP timeout at now.
func (u *inboundUDP) expire(now time.Time) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	ended := 0
	for k, f := range u.flows {
		if time.Duration(now.UnixNano()-f.lastActive) > u.n.cfg.UDPIdleTimeout {
			f.sender.Close()
			delete(u.flows, k)
			ended++
		}
	}
	u.active.Store(int32(len(u.flows)))
	return ended
}

// close ends every flow; later datagrams are dropped.
func (u *inboundUDP) close() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.closed = true
	for k, f := range u.flows {
		f.sender.Close()
		delete(u.flows, k)
	}
	u.active.Store(0)
}
