package nat

import (
	"context"
	"time"

	"github.com/masqnet/masq/flowtable"
	"github.com/masqnet/masq/internal/relay"

	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// handleTCP sees every TCP packet no endpoint of the stack claimed: the
// guest's SYNs to the world among them. The policy runs here, on the
// packet path, so drops and refusals cost no goroutine: returning false
// makes gVisor answer with a RST.
func (n *NAT) handleTCP(fwd *tcp.Forwarder, id gstack.TransportEndpointID, pkt *gstack.PacketBuffer) bool {
	src, dst := endpoints(id)
	switch n.stats.count(n.cfg.Policy.Outbound(src, dst).Action) {
	case DropSpoofed, DropInvalid:
		return true
	case Refuse:
		return false
	}
	if !isSYN(pkt) {
		return fwd.HandlePacket(id, pkt)
	}
	if nh := pkt.NetworkHeader().Slice(); guestTTL(nh) <= 1 {
		// Its TTL runs out at the gateway: a router answers time
		// exceeded (a TCP traceroute's first hop).
		var qb [maxQuote]byte
		n.errs.timeExceeded(src.Addr(), quoteOf(qb[:0], nh, pkt.TransportHeader().Slice()))
		return true
	}
	// Only this goroutine (the link's reader) calls HandlePacket, so a
	// change of the forwarder's drop counter across the call is this
	// SYN's: over the in-flight bound, it was turned down.
	kept, admit := n.syns.keep(id, pkt, n.cfg.Now())
	if !admit {
		n.stats.tcpPendingLimited.Add(1)
		return true // dropped: the guest retransmits once a dial there ends
	}
	dropped := n.fwdDrops.Value()
	handled := fwd.HandlePacket(id, pkt)
	if kept && (!handled || n.fwdDrops.Value() != dropped) {
		n.syns.take(id)
	}
	return handled
}

// forwardTCP runs, on a goroutine of gVisor's forwarder, for each new
// guest connection the policy let through: it dials the destination from
// the pod first and completes the guest's handshake only once that
// succeeded, so a refused destination is a RST to the guest at once and an
// unreachable one an ICMP unreachable, never a connection that later
// hangs.
func (n *NAT) forwardTCP(r *tcp.ForwarderRequest) {
	// This goroutine is the forwarder's, not ours: join it to the flows
	// shutdown waits for, so Run never returns while it dials.
	if !n.reg.Join() {
		n.syns.take(r.ID())
		r.Complete(true)
		return
	}
	defer n.reg.Leave()
	src, dst := endpoints(r.ID())
	d := n.cfg.Policy.Outbound(src, dst)
	if d.Action != Forward || !n.cfg.TCPLimit.Reserve() {
		if d.Action == Forward {
			n.stats.tcpLimited.Add(1)
		}
		n.syns.take(r.ID())
		r.Complete(true)
		return
	}
	defer n.cfg.TCPLimit.Release()
	entry := n.cfg.Flows.Open(flowtable.TCP, flowtable.Outbound, src, d.Dst)
	defer n.cfg.Flows.Close(entry)
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.DialTimeout)
	start := time.Now()
	pod, err := n.dialTCP(ctx, r.ID(), d.Dst)
	n.cfg.Flows.ObserveDial(flowtable.Outbound, time.Since(start), err == nil)
	cancel()
	// Taken after the dial: the guest's SYN retransmissions meanwhile
	// find the quote kept and add nothing.
	quote := n.syns.take(r.ID())
	if err != nil {
		n.stats.tcpDialFailed.Add(1)
		n.log.Debug("tcp dial failed", "src", src, "dst", d.Dst, "err", err)
		if n.ctx.Err() == nil && n.relayDialError(src, dst, err, quote) {
			r.Complete(false)
			return
		}
		if unreachable(err) && quote != nil && n.ctx.Err() == nil {
			r.Complete(false)
			n.sendUnreachable(src.Addr(), quote)
			return
		}
		r.Complete(true)
		return
	}
	var wq waiter.Queue
	ep, terr := r.CreateEndpoint(&wq)
	if terr != nil {
		// The guest gave up (RST) or the stack is closing.
		pod.Close()
		r.Complete(true)
		return
	}
	r.Complete(false)
	f := relay.NewTCP(n.bufs, ep, &wq, pod)
	entry.SetLocal(flowtable.AddrPortOf(pod.LocalAddr()))
	f.Account(entry)
	if !n.reg.Track(f) {
		f.Abort()
		f.Close()
		return
	}
	n.stats.tcpOpened.Add(1)
	defer n.reg.Untrack(f)
	f.Splice()
}
