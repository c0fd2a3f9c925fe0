package inbound

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/masqnet/masq/flowtable"
	"github.com/masqnet/masq/internal/relay"
	"github.com/masqnet/masq/ports"
	"github.com/masqnet/masq/stack"
)

// Forwarder forwards pod ports to the guest: one pod socket per port,
// protocol and family, all watched by one poller goroutine. A connection
// accepted on pod:P is dialled into the guest's P from the client's own
// address and relayed; a datagram to pod:P reaches the guest's P from the
// client, and the guest's answers leave from pod:P. New opens the
// sockets; Run serves until its context ends and returns having closed
// everything.
type Forwarder struct {
	cfg   Config
	st    *stack.Stack
	log   *slog.Logger
	stats *counters
	poll  *poller
	udp   *udpFlows
	reg   *relay.Registry // forwarded connections and their goroutines

	ctx    context.Context // ends when Run's does; dials derive from it
	cancel context.CancelFunc
	loops  sync.WaitGroup // Run's own goroutines
	once   sync.Once

	mu     sync.Mutex
	socks  []*inSocket // guarded by mu
	closed bool        // guarded by mu

	buf []byte              // UDP receive buffer, used on the poller goroutine only
	rsa unix.RawSockaddrAny // its source address
}

// inSocket is one pod socket of a forwarded port.
type inSocket struct {
	sock   *Socket
	fd     int
	proto  ports.Protocol
	family Family
	port   uint16
	local  netip.AddrPort // the socket's own address
}

// v6 reports whether the socket is an IPv6 one (its peer addresses and
// destinations are IPv6, v4-mapped for IPv4 clients of a dual-stack one).
func (s *inSocket) v6() bool { return s.family != IPv4 }

// New opens the pod sockets cfg asks for, on st's guest. A listed port
// that cannot be bound is an error; with no list, ports held by something
// else are skipped, summarised in one log line.
func New(st *stack.Stack, cfg Config) (*Forwarder, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	p, err := newPoller()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	stats := new(counters)
	f := &Forwarder{cfg: cfg, st: st, log: cfg.Logger, stats: stats, poll: p, reg: relay.NewRegistry(),
		udp: newUDPFlows(cfg, st, stats), ctx: ctx, cancel: cancel, buf: make([]byte, relay.CopyBufferSize)}
	if err := f.open(); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// plan returns what to forward: the configured ports, or every port but
// the reserved ones and the pod's ephemeral range; explicit reports a
// list given by the user, whose ports must all be bound.
func (f *Forwarder) plan() (set ports.Set, explicit bool, err error) {
	if f.cfg.Ports != nil {
		return *f.cfg.Ports, true, nil
	}
	first, last, err := f.cfg.Pod.EphemeralPorts()
	if err != nil {
		return ports.Set{}, false, fmt.Errorf("pod's ephemeral port range: %w", err)
	}
	return ports.AllBut(first, last), false, nil
}

// open binds the plan's sockets: TCP for every port before UDP for any,
// each lowest first (ports.Set.All's order), so a descriptor budget that
// runs out still forwards the common case, TCP services, on every port it
// can. Forwarded says what was bound.
func (f *Forwarder) open() error {
	set, explicit, err := f.plan()
	if err != nil {
		return err
	}
	var sum bindSummary
	fam := f.cfg.family()
	budget := fdBudget(processFDs())
	for proto, port := range set.All() {
		if ports.Reserved(port) || f.cfg.Except.Contains(proto, port) {
			continue
		}
		if sum.bound >= budget && !explicit {
			f.log.Warn("inbound forwarding stopped to keep file descriptors for the guest's flows (raise RLIMIT_NOFILE or list --ports)",
				"sockets", sum.bound, "next_port", fmt.Sprintf("%d/%s", port, proto))
			break
		}
		if fam, err = f.bindFamily(proto, fam, port, &sum); err == nil {
			sum.bound++
			continue
		}
		if explicit {
			return fmt.Errorf("forward port %d/%s: %w", port, proto, err)
		}
		if sum.skip(proto, port, err) {
			f.log.Warn("inbound forwarding stopped: out of file descriptors (raise RLIMIT_NOFILE or list --ports)",
				"sockets", sum.bound, "next_port", fmt.Sprintf("%d/%s", port, proto), "err", err)
			break
		}
	}
	sum.log(f.log, f.Forwarded())
	return nil
}

// bindFamily binds one port's socket of fam, falling back to IPv4 alone
// (and returning that family for the ports to come) when the pod has no
// IPv6.
func (f *Forwarder) bindFamily(proto ports.Protocol, fam Family, port uint16, sum *bindSummary) (Family, error) {
	err := f.bind(proto, fam, port)
	if err != nil && fam == DualStack && ipv6Missing(err) {
		sum.noIPv6, fam = true, IPv4
		err = f.bind(proto, fam, port)
	}
	return fam, err
}

// Reading the process's file descriptors at the edge, for fdBudget.
const (
	// unlimitedFDs stands for a limit too high to matter (RLIM_INFINITY,
	// or more than any port set needs): the budget is then every socket
	// of every port and protocol, with room to spare.
	unlimitedFDs = 1 << 24
	// freshFDs is what a fresh masq has open when /proc cannot say:
	// stdio, epoll, the tap, the runtime's own.
	freshFDs = 64
)

// processFDs returns the process's file-descriptor limit and how many it
// has open.
func processFDs() (limit, open int) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil || lim.Cur > unlimitedFDs {
		return unlimitedFDs, freshFDs
	}
	open = freshFDs
	if entries, err := os.ReadDir("/proc/self/fd"); err == nil {
		open = len(entries)
	}
	return int(lim.Cur), open
}

// bind opens one pod socket and watches it.
func (f *Forwarder) bind(proto ports.Protocol, fam Family, port uint16) error {
	sock, err := f.cfg.Pod.Listen(proto, fam, port)
	if err != nil {
		return err
	}
	var local netip.AddrPort
	if sa, err := unix.Getsockname(sock.fd); err == nil {
		if _, ok := sa.(*unix.SockaddrInet4); ok {
			fam = IPv4 // what the pod gave, whatever was asked
		}
		local = relay.AddrPort(sa)
	}
	s := &inSocket{sock: sock, fd: sock.fd, proto: proto, family: fam, port: port, local: local}
	ready := func() { f.accept(s) }
	if proto == ports.UDP {
		ready = func() { f.readUDP(s) }
		growReceiveBuffer(s.fd)
	}
	f.mu.Lock()
	f.socks = append(f.socks, s)
	f.mu.Unlock()
	return f.poll.add(s.fd, ready)
}

// udpReceiveBuffer is the receive buffer of a forwarded UDP port's socket:
// the datagrams clients sent that the poller has not read yet. With the
// kernel's default (208 KiB, some 140 MTU-sized datagrams, 1.7 ms at
// 1 Gbit/s) a poller kept off the CPU for longer lost the rest of a
// burst at this socket (its RcvbufErrors counted 60 % of make bench's
// udp_in). It bounds what may queue, it allocates nothing: an idle port
// costs no more, and the kernel's udp_mem bounds all sockets together.
const udpReceiveBuffer = 4 << 20

// growReceiveBuffer sets fd's receive buffer to udpReceiveBuffer:
// SO_RCVBUFFORCE passes net.core.rmem_max while masq has CAP_NET_ADMIN
// (at start-up), the plain option gives what rmem_max allows otherwise.
// Best effort: the default still works.
func growReceiveBuffer(fd int) {
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, udpReceiveBuffer) != nil {
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, udpReceiveBuffer)
	}
}

// Run serves until ctx ends, then closes the sockets, resets every
// forwarded connection and returns once all of their goroutines have
// ended.
func (f *Forwarder) Run(ctx context.Context) error {
	f.loops.Go(f.poll.run)
	f.loops.Go(f.expireLoop)
	f.loops.Go(f.reportLoop)
	select {
	case <-ctx.Done():
	case <-f.ctx.Done():
	}
	f.Close()
	f.logStats("inbound at stop")
	return nil
}

// Close stops the poller, resets the forwarded connections, waits for
// every goroutine and releases the sockets; Run does it when its context
// ends. It is safe to call more than once.
func (f *Forwarder) Close() { f.once.Do(f.close) }

func (f *Forwarder) close() {
	open := f.reg.Close()
	f.cancel()
	f.poll.stop()
	for _, fl := range open {
		fl.Abort()
	}
	f.reg.Wait()
	f.loops.Wait()
	f.poll.close()
	// The UDP flows first: a guest reply sending through a port's socket
	// holds them (read-locked) until its send returns, so no send can use
	// a socket's fd once it is closed (and perhaps reused).
	f.udp.close()
	f.mu.Lock()
	f.closed = true
	for _, s := range f.socks {
		s.sock.Close()
	}
	f.socks = nil
	f.mu.Unlock()
}

// expireLoop ends idle UDP flows until the forwarder closes, checking
// four times per timeout, so a flow lives at most a quarter longer.
func (f *Forwarder) expireLoop() {
	tick := time.NewTicker(f.cfg.UDPIdleTimeout / 4)
	defer tick.Stop()
	for {
		select {
		case <-f.ctx.Done():
			return
		case <-tick.C:
			f.udp.expire(f.cfg.Now())
		}
	}
}

// acceptPause is how long a listener rests when the process is out of
// file descriptors: level-triggered, it would otherwise wake the poller
// in a busy loop until one frees.
const acceptPause = 100 * time.Millisecond

// accept takes every pending connection of s and forwards each on its own
// goroutine, within the TCP bound (beyond it the client is reset at once).
func (f *Forwarder) accept(s *inSocket) {
	for {
		fd, sa, err := unix.Accept4(s.fd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		switch {
		case err == unix.EMFILE || err == unix.ENFILE:
			f.stats.paused.Add(1)
			f.poll.pause(s.fd, acceptPause)
			return
		case err != nil:
			return // EAGAIN: drained
		}
		if !f.cfg.TCPLimit.Reserve() {
			f.stats.limited.Add(1)
			resetFD(fd)
			continue
		}
		client := relay.AddrPort(sa)
		if !f.reg.Spawn(func() { defer f.cfg.TCPLimit.Release(); f.forwardTCP(fd, client, s) }) {
			f.cfg.TCPLimit.Release()
			unix.Close(fd)
			return
		}
	}
}

// resetFD closes an accepted socket with a RST.
func resetFD(fd int) {
	unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	unix.Close(fd)
}

// forwardTCP connects a client's accepted connection to the guest's port,
// from the client's own address, and relays the two.
func (f *Forwarder) forwardTCP(fd int, client netip.AddrPort, s *inSocket) {
	file := os.NewFile(uintptr(fd), "inbound")
	conn, err := net.FileConn(file)
	file.Close()
	if err != nil {
		return
	}
	src := f.cfg.seenFrom(client)
	dst := netip.AddrPortFrom(f.cfg.guestFor(src.Addr()), s.port)
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetKeepAlive(true) // a client that vanished must not hold the flow forever
	}
	entry := f.cfg.Flows.Open(flowtable.TCP, flowtable.Inbound, dst, client)
	defer f.cfg.Flows.Close(entry)
	entry.SetLocal(flowtable.AddrPortOf(conn.LocalAddr()))
	ctx, cancel := context.WithTimeout(f.ctx, f.cfg.DialTimeout)
	start := time.Now()
	ep, wq, err := f.st.DialTCP(ctx, src, dst)
	f.cfg.Flows.ObserveDial(flowtable.Inbound, time.Since(start), err == nil)
	cancel()
	if err != nil {
		f.stats.refused.Add(1)
		f.log.Debug("inbound connection not accepted by the guest", "client", client, "guest", dst, "err", err)
		relay.ResetConn(conn)
		return
	}
	flow := relay.NewTCP(f.cfg.Pool, ep, wq, conn)
	flow.Account(entry)
	if !f.reg.Track(flow) {
		flow.Abort()
		flow.Close()
		return
	}
	defer f.reg.Untrack(flow)
	f.stats.tcp.Add(1)
	flow.Splice()
}

// ipv6Missing reports whether err says the pod has no IPv6.
func ipv6Missing(err error) bool {
	return errors.Is(err, unix.EAFNOSUPPORT) || errors.Is(err, unix.EADDRNOTAVAIL)
}
