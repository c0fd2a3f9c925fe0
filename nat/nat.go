package nat

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"

	"github.com/masqnet/masq/flowtable"
	"github.com/masqnet/masq/internal/relay"
	"github.com/masqnet/masq/stack"
)

// Defaults for Config's bounds and timeouts.
const (
	// DefaultDialTimeout bounds the pod-side connect of a guest's TCP
	// connection. The guest's SYN waits that long at most; Linux gives up
	// on a connect after about 2 minutes, so 20 s fails black holes well
	// before the guest does while leaving slow paths time.
	DefaultDialTimeout = 20 * time.Second

	// DefaultMaxTCPPending bounds the guest's connections being dialled at
	// once (gVisor's forwarder in-flight limit). gvisor-tap-vsock uses 10,
	// so ten black-holed destinations stall it; thousands keep a burst of
	// connects (a browser, a crawler) moving.
	DefaultMaxTCPPending = 4096

	// DefaultMaxTCP bounds the guest's TCP connections, outbound and
	// inbound: far above a VM's need, and at about 27 KiB per idle
	// connection (measured: make bench) under 1 GiB when all are open.
	DefaultMaxTCP = 32768

	// DefaultMaxUDPFlows bounds UDP flows per guest, and ICMP echo flows
	// apart: pod sockets open, each with a goroutine. A flow costs about
	// 4 KiB of masq's memory (measured: 3.7 KiB for the flow, its
	// goroutine and maps, 0.2 KiB for the socket's Go side; the kernel's
	// socket is apart), so 8192 cost 32 MiB; a guest needs far fewer at
	// once, since resolvers' one-shot flows end within 30 s. A new flow
	// beyond the bound evicts the least recently used one.
	DefaultMaxUDPFlows = 8192

	// DefaultMaxUDPPeers bounds the destination entries (addresses a flow
	// has sent to, from which it accepts replies) across all UDP flows,
	// and ICMP echo flows apart. An entry costs about 130 B (measured),
	// and 475 B more for its route to the guest once it answers, so
	// 65536 cost 8 MiB, 39 MiB if all answer; flows times a flow's own
	// bound (8 Mi entries) cost over 1 GiB. It is 8 destinations for
	// each of DefaultMaxUDPFlows, or 64 flows at a flow's own bound. A
	// new destination beyond it evicts the least recently used flows.
	DefaultMaxUDPPeers = 65536

	// DefaultUDPIdleTimeout ends a UDP flow without traffic, as the
	// kernel's conntrack does for an assured stream (120 s).
	DefaultUDPIdleTimeout = 120 * time.Second

	// DefaultDNSIdleTimeout ends a flow to port 53 sooner: a DNS exchange
	// is one request and one answer, and resolvers use a fresh source port
	// per query, so these flows would otherwise pile up.
	DefaultDNSIdleTimeout = 30 * time.Second
)

// Config configures a NAT. Zero fields take the defaults above.
type Config struct {
	// Policy decides every new flow.
	Policy Policy
	// Pod reaches the world; nil means KernelPod.
	Pod Pod
	// DialTimeout bounds the pod-side connect of a TCP flow.
	DialTimeout time.Duration
	// MaxTCPPending bounds connections being dialled at once.
	MaxTCPPending int
	// MaxTCP bounds TCP connections being dialled or established; more
	// are refused (RST). Unused when TCPLimit is set.
	MaxTCP int
	// TCPLimit, when set, is a bound on TCP connections shared with
	// inbound forwarding, in place of MaxTCP.
	TCPLimit *relay.Limit
	// Pool lends the copy buffers; nil means a pool of its own.
	Pool *relay.Pool
	// MaxUDPFlows bounds UDP flows, and ICMP echo flows apart; beyond it
	// the least recently used flow is evicted (Stats.UDPEvicted).
	MaxUDPFlows int
	// MaxUDPPeers bounds the destinations all UDP flows have sent to (and
	// ICMP echo flows' apart); beyond it the least recently used flows
	// are evicted.
	MaxUDPPeers int
	// UDPIdleTimeout and DNSIdleTimeout end idle UDP flows.
	UDPIdleTimeout, DNSIdleTimeout time.Duration
	// Now is the clock for idle timeouts; nil means time.Now.
	Now func() time.Time
	// InboundReply, when set, is offered every UDP datagram of the guest
	// first, on the packet path: it reports whether the datagram answered
	// an inbound flow and was taken (inbound.Forwarder.FromGuest). It must
	// not block.
	InboundReply func(src, dst netip.AddrPort, payload []byte) bool
	// Logger logs one line per event; nil discards.
	Logger *slog.Logger
	// Flows is the flow table the NAT's flows are listed and counted in;
	// nil means a table of its own (Flows() returns it).
	Flows *flowtable.Table
	// BurstEnd, when set, says the guest's link reports the end of each
	// burst of frames it delivers (link.Vnet.OnBurstEnd): New hands it
	// the function to call then, before it handles any packet. The NAT
	// then holds a burst's datagrams of one UDP flow to one destination
	// and sends them to the pod together (UDP GSO) at the burst's end.
	// Without it every datagram is sent as it arrives.
	BurstEnd func(endBurst func())
}

// withDefaults fills the zero fields of c.
func (c Config) withDefaults() Config {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.MaxTCPPending, DefaultMaxTCPPending)
	def(&c.MaxTCP, DefaultMaxTCP)
	def(&c.MaxUDPFlows, DefaultMaxUDPFlows)
	def(&c.MaxUDPPeers, DefaultMaxUDPPeers)
	defDur(&c.DialTimeout, DefaultDialTimeout)
	defDur(&c.UDPIdleTimeout, DefaultUDPIdleTimeout)
	defDur(&c.DNSIdleTimeout, DefaultDNSIdleTimeout)
	if c.Pod == nil {
		c.Pod = KernelPod{}
	}
	if c.TCPLimit == nil {
		c.TCPLimit = relay.NewLimit(c.MaxTCP)
	}
	if c.Pool == nil {
		c.Pool = relay.NewPool()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Flows == nil {
		c.Flows = flowtable.New(c.Now)
	}
	return c
}

// NAT proxies the guest's flows on a stack through the pod. New installs
// it; Run serves until its context ends and then closes every flow.
type NAT struct {
	cfg   Config
	st    *stack.Stack
	log   *slog.Logger
	stats *counters // its own allocation: the datagram tables count into it
	bufs  *relay.Pool
	reg   *relay.Registry // open flows and their goroutines
	loops sync.WaitGroup  // the NAT's own goroutines: expiry, reports, inbound

	ctx    context.Context // ends when Run's does; flows derive from it
	cancel context.CancelFunc

	shutdownOnce sync.Once
	running      atomic.Bool // Run was called

	udp, icmp *datagramTable

	ping4, ping6 bool // the pod gives ping sockets of the family
	rawPing      bool // they are raw ICMP sockets (no ping socket; CAP_NET_RAW)

	sweepMu sync.Mutex
	release osRelease // guarded by sweepMu

	errs     *guestErrors       // ICMP errors to the guest
	syns     *synQuotes         // SYN quotes for ICMP errors
	fwdDrops *tcpip.StatCounter // SYNs the forwarder dropped over its in-flight bound
}

// New installs a NAT on st: from now on the guest's TCP and UDP flows are
// handed to it. Run serves them; Close releases a NAT that will not Run.
func New(st *stack.Stack, cfg Config) (*NAT, error) {
	cfg = cfg.withDefaults()
	if !cfg.Policy.Guest4.IsValid() && !cfg.Policy.Guest6.IsValid() {
		return nil, errors.New("nat: policy has no guest address")
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &NAT{
		cfg: cfg, st: st, log: cfg.Logger, stats: new(counters), ctx: ctx, cancel: cancel,
		bufs: cfg.Pool, reg: relay.NewRegistry(),
		// The forwarder holds at most MaxTCPPending SYNs; twice that
		// leaves room for entries awaiting their ttl. An entry lives at
		// most as long as its dial, plus slack.
		syns: newSYNQuotes(2*cfg.MaxTCPPending, pendingPerDst(cfg.MaxTCPPending), cfg.DialTimeout+synQuoteSlack),
	}
	c := n.stats
	n.errs = &guestErrors{st: st, gateway: n.cfg.Policy.gateway, now: cfg.Now,
		bucket: newTokenBucket(errorRate, errorBurst), sent: &c.icmpErrors, limited: &c.icmpErrorsLimited}
	tm := idleTimeouts{udp: cfg.UDPIdleTimeout, short: cfg.DNSIdleTimeout}
	env := func(proto datagramProto, stats flowCounters) *datagramEnv {
		return &datagramEnv{pod: cfg.Pod, st: st, reg: n.reg, bufs: n.bufs, now: cfg.Now, log: n.log, flows: cfg.Flows,
			proto: proto, stats: stats, errs: n.errs, idle: func(dst netip.AddrPort) time.Duration { return tm.idle(proto.echo(), dst) }}
	}
	udpEnv := env(udpProto{}, flowCounters{&c.udpLimited, &c.udpOpened, &c.udpExpired,
		&c.udpEvicted, &c.udpOpenFailed, &c.udpSendFailed})
	if cfg.BurstEnd != nil {
		udpEnv.batch = newUDPBatch()
		cfg.BurstEnd(udpEnv.batch.flush)
	}
	n.udp = newDatagramTable(udpEnv, cfg.MaxUDPFlows, cfg.MaxUDPPeers)
	n.icmp = newDatagramTable(env(icmpProto{}, flowCounters{&c.icmpLimited, &c.icmpOpened, &c.icmpExpired,
		&c.icmpEvicted, &c.icmpOpenFailed, &c.icmpSendFailed}), cfg.MaxUDPFlows, cfg.MaxUDPPeers)
	ns := st.Netstack()
	n.fwdDrops = ns.Stats().TCP.ForwardMaxInFlightDrop
	fwd := tcp.NewForwarder(ns, 0, cfg.MaxTCPPending, n.forwardTCP)
	ns.SetTransportProtocolHandler(tcp.ProtocolNumber, func(id gstack.TransportEndpointID, pkt *gstack.PacketBuffer) bool {
		return n.handleTCP(fwd, id, pkt)
	})
	ns.SetTransportProtocolHandler(udp.ProtocolNumber, n.handleUDP)
	ns.SetTransportProtocolHandler(icmp.ProtocolNumber4, n.handleICMP)
	ns.SetTransportProtocolHandler(icmp.ProtocolNumber6, n.handleICMP)
	var err4, err6 error
	var raw4, raw6 bool
	n.ping4, raw4, err4 = probePing(cfg.Pod, netip.IPv4Unspecified())
	n.ping6, raw6, err6 = probePing(cfg.Pod, netip.IPv6Unspecified())
	n.rawPing = raw4 || raw6
	if !n.ping4 || !n.ping6 {
		n.log.Info("guest pings to the world are not answered: the pod gives no ping socket (see net.ipv4.ping_group_range) and masq may open no raw ICMP socket (CAP_NET_RAW)",
			"ipv4_err", err4, "ipv6_err", err6)
	}
	if n.rawPing {
		n.log.Info("guest pings go through raw ICMP sockets: the pod gives no ping socket (net.ipv4.ping_group_range)",
			"ipv4", raw4, "ipv6", raw6)
	}
	return n, nil
}

// probePing reports whether pod gives echo sockets of a's family, and
// whether they are raw ICMP sockets.
func probePing(pod Pod, a netip.Addr) (ok, raw bool, err error) {
	c, err := pod.ListenPing(a)
	if err != nil {
		return false, false, err
	}
	_, raw = c.(*rawPingConn)
	c.Close()
	return true, raw, nil
}

// RawPing reports whether guest pings go through raw ICMP sockets (the
// pod gives no ping socket): masq then needs CAP_NET_RAW for as long as
// it runs, to open one per guest echo identifier.
func (n *NAT) RawPing() bool { return n.rawPing }

// pingOK reports whether echo requests to a can be proxied.
func (n *NAT) pingOK(a netip.Addr) bool {
	if a.Is4() {
		return n.ping4
	}
	return n.ping6
}

// ErrClosed is returned by Run on a NAT that was closed before it ran.
var ErrClosed = errors.New("nat: closed before Run")

// Run serves until ctx ends, then refuses new flows, closes every open one
// and returns nil once all of their goroutines have ended. It returns an
// error, serving nothing, when the NAT was closed before (ErrClosed) or
// runs already.
func (n *NAT) Run(ctx context.Context) error {
	if !n.running.CompareAndSwap(false, true) {
		return errors.New("nat: Run called twice")
	}
	if n.ctx.Err() != nil {
		return ErrClosed
	}
	n.loops.Go(n.expireLoop)
	n.loops.Go(n.reportLoop)
	select {
	case <-ctx.Done():
	case <-n.ctx.Done():
	}
	n.shutdown()
	n.logStats("flows at stop")
	return nil
}

// pendingPerDst is how many of the maxPending dials one destination
// address may hold: a sixteenth, so a guest's flood of SYNs to one address
// that never answers leaves fifteen sixteenths of the bound to its other
// connections (256 of 4096 by default: far more connects at once than a
// responsive server ever has pending). At least 16.
func pendingPerDst(maxPending int) int { return max(16, maxPending/16) }

// synQuoteSlack is how long past its dial's timeout a SYN quote may
// stay: the dial's end takes it, so an entry older than that is an
// orphan. A few seconds cover a handler that is late to run.
const synQuoteSlack = 5 * time.Second

// statsInterval is how often the counters are logged, when they changed:
// drops and bounds hit show up within a minute, without a log line per
// packet.
const statsInterval = time.Minute

// reportLoop logs the counters every statsInterval in which they changed,
// until the NAT shuts down.
func (n *NAT) reportLoop() {
	tick := time.NewTicker(statsInterval)
	defer tick.Stop()
	var last Stats
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-tick.C:
			if s := n.Stats(); s != last {
				n.logStats("flows")
				last = s
			}
		}
	}
}

// logStats writes the counters as one line.
func (n *NAT) logStats(msg string) {
	s := n.Stats()
	n.log.Info(msg,
		"tcp_opened", s.TCPOpened, "tcp_dial_failed", s.TCPDialFailed, "tcp_limited", s.TCPLimited,
		"tcp_pending_limited", s.TCPPendingLimited, "tcp_pending_dropped", s.TCPPendingDropped,
		"udp_opened", s.UDPOpened, "udp_expired", s.UDPExpired, "udp_evicted", s.UDPEvicted, "udp_limited", s.UDPLimited,
		"udp_open_failed", s.UDPOpenFailed, "udp_send_failed", s.UDPSendFailed,
		"icmp_opened", s.ICMPOpened, "icmp_expired", s.ICMPExpired, "icmp_evicted", s.ICMPEvicted, "icmp_limited", s.ICMPLimited,
		"icmp_open_failed", s.ICMPOpenFailed, "icmp_send_failed", s.ICMPSendFailed,
		"icmp_errors", s.ICMPErrors, "icmp_errors_limited", s.ICMPErrorsLimited,
		"memory_released", s.MemoryReleased,
		"dropped_spoofed", s.DroppedSpoofed, "dropped_invalid", s.DroppedInvalid, "refused_gateway", s.RefusedGateway)
}

// Close stops new flows, aborts open ones and waits for every goroutine; Run does it when its context ends. It is safe
// to call more than once.
func (n *NAT) Close() { n.shutdown() }

// shutdown stops new flows, aborts open ones and waits for them, once.
func (n *NAT) shutdown() { n.shutdownOnce.Do(n.doShutdown) }

func (n *NAT) doShutdown() {
	// What the UDP batch holds is not flushed first: its send may block
	// (a pod socket's send buffer full), holding the batch, until the
	// socket closes, just below. The link's reader flushes at each
	// burst's end; a burst cut by the shutdown is dropped.
	open := n.reg.Close()
	n.cancel()
	for _, f := range open {
		f.Abort()
	}
	n.reg.Wait()
	n.loops.Wait()
}

// expireLoop ends idle datagram flows until the NAT shuts down. It checks
// four times per the shortest timeout, so a flow lives at most a quarter
// longer than its timeout.
func (n *NAT) expireLoop() {
	tick := time.NewTicker(min(n.cfg.UDPIdleTimeout, n.cfg.DNSIdleTimeout) / 4)
	defer tick.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-tick.C:
			n.sweep(n.cfg.Now())
		}
	}
}

// expire ends the datagram flows idle at now and returns how many, and
// how many destination entries they held. It also forgets orphaned SYN
// quotes.
func (n *NAT) expire(now time.Time) (flows, peers int) {
	n.syns.expire(now)
	uf, up := n.udp.expire(now)
	icf, icp := n.icmp.expire(now)
	flows, peers = uf+icf, up+icp
	return flows, peers
}
