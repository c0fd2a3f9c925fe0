package nat

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/masqnet/masq/flowtable"
	"github.com/masqnet/masq/stack"
)

// datagramFlow is one guest source (address and port, or echo
// identifier) proxied through one pod socket. Replies are accepted from
// the addresses the flow has sent to (address-dependent filtering, RFC
// 4787's recommended mode for security) and written to the guest from the
// address it sent to.
type datagramFlow struct {
	env   *datagramEnv
	key   flowKey
	src   netip.AddrPort // the guest's address and port
	conn  UDPConn
	gso   GSOConn // conn, when it can send batches; else nil
	ready *podReadiness
	idle  time.Duration
	flow  *flowtable.Entry // set before the flow sends or reads

	lastActive atomic.Int64 // Config.Now at the last packet, in Unix ns
	// ended is set when the read loop has ended on its own (the socket
	// failed): the table then replaces or sweeps the flow.
	ended atomic.Bool
	// noGSO is set once the kernel refused to segment the flow's
	// datagrams: it sends each on its own from then on.
	noGSO atomic.Bool
	// aborted is set when the flow's socket is being closed (Abort):
	// whatever its read loop's wait then fails with is the end.
	aborted atomic.Bool

	mu sync.Mutex
	// peers maps each pod-side address the flow sent to to the address
	// (and, for a mapped destination, the port) replies from it appear to
	// come from; a zero port keeps the reply's own. nil once the flow has
	// ended (release). Guarded by mu.
	peers map[netip.Addr]netip.AddrPort
	// quotes holds, per pod-side destination (port 0 for echo flows), the
	// quote of the last guest datagram sent there, for the ICMP error it
	// may draw; at most maxFlowQuotes. Guarded by mu.
	quotes map[netip.AddrPort][]byte

	closeOnce sync.Once
}

// maxFlowPeers bounds the destinations of one flow, each an entry here and,
// once it answers, perhaps a route to the guest: a guest socket that sends
// from one port to ever more hosts (a scanner, a DHT node) must not take
// the whole table's destination budget (Config.MaxUDPPeers) for itself.
// Datagrams to further hosts are dropped and counted as limited; the
// flow's idle expiry resets it. 1024 is far above what a resolver, a game
// or a VPN client sends to from one port.
const maxFlowPeers = 1024

// maxFlowQuotes bounds the quotes a flow keeps (about 60 bytes each): an
// error about a destination beyond them is not relayed. A traceroute's
// probes step the port, and its errors come back within a few seconds,
// long before 64 further destinations pushed them out.
const maxFlowQuotes = 64

// notPollableRetry is how long a flow's read loop waits before it looks
// at its socket again after the runtime's poller called it not pollable
// (see readLoop): a socket stays so only while its send buffer is full.
const notPollableRetry = 10 * time.Millisecond

// errFlowEnded says a flow was evicted or expired before it could send.
var errFlowEnded = errors.New("flow ended")

func newDatagramFlow(env *datagramEnv, key flowKey, conn UDPConn, idle time.Duration) *datagramFlow {
	f := &datagramFlow{env: env, key: key, src: key.src, conn: conn, ready: newPodReadiness(conn), idle: idle,
		peers: make(map[netip.Addr]netip.AddrPort, 1)}
	f.gso, _ = conn.(GSOConn)
	f.touch()
	return f
}

// send sends a guest datagram to dst from the pod; guestDst is where the
// guest sent it (dst unless the policy mapped it). A new destination takes
// an entry of the table's budget (added reports it); the table then
// evicts to stay within its bound. quote and ttl are as in
// datagramTable.forward.
func (f *datagramFlow) send(payload []byte, dst, guestDst netip.AddrPort, quote []byte, ttl uint8) (added bool, err error) {
	seen := netip.AddrPortFrom(guestDst.Addr(), 0)
	if guestDst != dst {
		seen = guestDst
	}
	f.mu.Lock()
	if f.peers == nil {
		f.mu.Unlock()
		return false, errFlowEnded
	}
	_, known := f.peers[dst.Addr()]
	if !known {
		if len(f.peers) >= f.env.perFlow {
			f.mu.Unlock()
			f.env.stats.limited.Add(1)
			return false, nil // dropped: see maxFlowPeers
		}
		f.peers[dst.Addr()] = seen
		f.env.peers.Add(1) // under f.mu, so release takes back exactly what was added
		f.flow.AddRemote()
	}
	if quote != nil {
		f.keepQuoteLocked(f.quoteKey(dst, payload), quote)
	}
	f.mu.Unlock()
	now := f.touch()
	f.flow.Count(true).Add(len(payload), now) // before the send: what the peer saw is counted
	df := dontFragment(quote)
	if b := f.env.batch; b != nil {
		if f.gso != nil && len(payload) > 0 && !f.noGSO.Load() {
			b.add(f, payload, dst, ttl, df, quote)
			return !known, nil
		}
		b.flushFlow(f) // what the flow sent before leaves first
	}
	return !known, f.sendNow(payload, dst, ttl, df)
}

// sendNow sends one datagram as send describes, at once.
func (f *datagramFlow) sendNow(payload []byte, dst netip.AddrPort, ttl uint8, df bool) error {
	err := f.write(payload, dst, ttl, df)
	if _, ok := f.conn.(ErrorConn); ok && err != nil && isPodError(err) && !errors.Is(err, syscall.EMSGSIZE) &&
		!errors.Is(err, syscall.EAGAIN) {
		// The kernel fails a send with the error pending on the socket
		// (sock_error), an ICMP error an earlier datagram drew, and
		// does not send it; the error stays queued for the read loop.
		// (EMSGSIZE is this datagram's own: too big for the path MTU
		// with df; the error queue holds it for the guest. EAGAIN is a
		// full send buffer: the datagram is dropped, see kernelConn.)
		err = f.write(payload, dst, ttl, df)
	}
	if err != nil {
		f.env.stats.sendFailed.Add(1)
	}
	return err
}

// write sends payload to dst with the guest's ttl less one and its df
// when the socket can (ttl 0: the socket's defaults).
func (f *datagramFlow) write(payload []byte, dst netip.AddrPort, ttl uint8, df bool) error {
	var err error
	if tc, ok := f.conn.(TTLConn); ok && ttl > 1 {
		_, err = tc.WriteToTTL(payload, dst, ttl-1, df)
	} else {
		_, err = f.conn.WriteToUDPAddrPort(payload, dst)
	}
	return err
}

// release gives the flow's destination entries back to the table, at
// once rather than when its goroutine ends, and returns how many there
// were. The flow sends nothing after it (errFlowEnded) and accepts no
// reply. It is safe to call more than once.
func (f *datagramFlow) release() int {
	f.mu.Lock()
	n := len(f.peers)
	f.peers, f.quotes = nil, nil
	f.mu.Unlock()
	f.env.peers.Add(-int64(n))
	return n
}

// peer returns where the guest sees a reply from the pod-side address
// from come from, and whether the flow has sent there at all.
func (f *datagramFlow) peer(from netip.AddrPort) (netip.AddrPort, bool) {
	f.mu.Lock()
	seen, ok := f.peers[from.Addr().Unmap()]
	f.mu.Unlock()
	if ok && seen.Port() == 0 {
		seen = netip.AddrPortFrom(seen.Addr(), from.Port())
	}
	return seen, ok
}

// readLoop writes the pod socket's datagrams to the guest until the socket
// is closed; it then releases the flow. Its senders hold a route to the
// guest per peer that answered: no more than the flow's destination
// entries, so the table's MaxUDPPeers bounds them too.
func (f *datagramFlow) readLoop() {
	senders := make(map[netip.Addr]*stack.Sender, 1)
	defer func() {
		for _, s := range senders {
			s.Close()
		}
		f.release()
		f.Abort() // the socket failed: closed now, not when the table notices
		f.env.flows.Close(f.flow)
		f.ended.Store(true)
		f.env.reg.Untrack(f)
	}()
	for {
		if f.ready != nil {
			if err := f.ready.wait(); err != nil {
				if f.aborted.Load() || errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed) ||
					errors.Is(err, syscall.EINVAL) {
					return
				}
				// "Not pollable": epoll reported an error alone (one
				// queued while the socket could be neither read nor
				// written: its send buffer full), and Go's poller fails
				// every wait so until the socket's next readiness event.
				// The flow lives on: relay what is queued, look again
				// shortly.
				f.relayErrors()
				time.Sleep(notPollableRetry)
				continue
			}
		}
		if f.ready != nil && f.ready.errPending && f.relayErrors() {
			continue // the wake was for an error: nothing to read
		}
		b := f.env.bufs.Get()
		nr, from, err := f.conn.ReadFromUDPAddrPort(*b)
		if err != nil {
			f.env.bufs.Put(b)
			if isPodError(err) && f.relayErrors() {
				continue
			}
			return
		}
		f.reply((*b)[:nr], from, senders)
		f.env.bufs.Put(b)
	}
}

// reply writes one datagram from the pod-side address from to the guest.
func (f *datagramFlow) reply(payload []byte, from netip.AddrPort, senders map[netip.Addr]*stack.Sender) {
	src, ok := f.peer(from)
	if !ok {
		return // filtered: the flow never sent there
	}
	s := senders[src.Addr()]
	if s == nil {
		var err error
		if s, err = f.env.st.NewSender(src.Addr(), f.src.Addr()); err != nil {
			return
		}
		senders[src.Addr()] = s
	}
	f.flow.Count(false).Add(len(payload), f.touch()) // before the send: what the guest saw is counted
	f.env.proto.reply(s, src, f.src, payload)
}

// touch records activity now and returns now in Unix ns.
func (f *datagramFlow) touch() int64 {
	now := f.env.now().UnixNano()
	f.lastActive.Store(now)
	return now
}

// account lists the flow, first sent toward dst, in the flow table.
func (f *datagramFlow) account(dst netip.AddrPort) {
	kind := flowtable.UDP
	if f.env.proto.echo() {
		kind = flowtable.ICMP
	}
	f.flow = f.env.flows.Open(kind, flowtable.Outbound, f.src, dst)
	if la, ok := f.conn.(interface{ LocalAddr() net.Addr }); ok {
		f.flow.SetLocal(flowtable.AddrPortOf(la.LocalAddr()))
	}
}

// idleSince returns how long the flow has been idle at now.
func (f *datagramFlow) idleSince(now time.Time) time.Duration {
	return time.Duration(now.UnixNano() - f.lastActive.Load())
}

// Abort closes the pod socket; the read loop then ends and releases the
// flow. It implements relay.Flow.
func (f *datagramFlow) Abort() {
	f.aborted.Store(true) // before the close: the read loop then knows its end
	f.closeOnce.Do(func() { f.conn.Close() })
}
