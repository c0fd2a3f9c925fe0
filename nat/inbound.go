package nat

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/masqnet/masq/ports"
)

// DefaultInboundDialTimeout bounds the connect into the guest of an
// inbound connection: a guest that does not answer at all (not even with
// a RST) costs its client at most this long before the client's
// connection is reset.
const DefaultInboundDialTimeout = 10 * time.Second

// inSocket is one pod socket of a forwarded port.
type inSocket struct {
	fd     int
	proto  ports.Protocol
	family Family
	port   uint16
}

// v6 reports whether the socket is an IPv6 one (its peer addresses and
// destinations are IPv6, v4-mapped for IPv4 clients of a dual-stack one).
func (s *inSocket) v6() bool { return s.family != IPv4 }

// inbound forwards pod ports to the guest: one pod socket per port,
// protocol and family, all watched by one poller goroutine.
type inbound struct {
	n    *NAT
	poll *poller
	udp  *inboundUDP

	mu     sync.Mutex
	socks  []*inSocket // guarded by mu
	closed bool        // guarded by mu

	buf []byte              // UDP receive buffer, used on the poller goroutine only
	rsa unix.RawSockaddrAny // its source address
}

// inboundPlan is the set of (protocol, port) pairs to forward.
type inboundPlan struct {
	ports    ports.Set
	explicit bool // listed by the user: failing to bind one is an error
}

// plan returns what to forward: the configured ports, or every port but
// the reserved ones and the pod's ephemeral range.
func (n *NAT) inboundPlan() (inboundPlan, error) {
	if n.cfg.InboundPorts != nil {
		return inboundPlan{ports: *n.cfg.InboundPorts, explicit: true}, nil
	}
	first, last, err := n.cfg.Pod.EphemeralPorts()
	if err != nil {
		return inboundPlan{}, fmt.Errorf("pod's ephemeral port range: %w", err)
	}
	return inboundPlan{ports: ports.AllBut(first, last)}, nil
}

// openInbound opens and watches the pod sockets of the plan.
func (n *NAT) openInbound() (*inbound, error) {
	plan, err := n.inboundPlan()
	if err != nil {
		return nil, err
	}
	p, err := newPoller()
	if err != nil {
		return nil, err
	}
	in := &inbound{n: n, poll: p, udp: newInboundUDP(n), buf: make([]byte, copyBufferSize)}
	if err := in.open(plan); err != nil {
		in.close()
		return nil, err
	}
	return in, nil
}

// open binds the plan's sockets, port by port (TCP and UDP of one port
// together, so a budget that runs out leaves whole low ports forwarded),
// skipping and summarising in one log line the ports something else
// holds when forwarding every port.
func (in *inbound) open(plan inboundPlan) error {
	var sum bindSummary
	fam := in.family()
	budget := fdBudget(processFDs())
	for p := 1; p <= 65535; p++ {
		port := uint16(p)
		for _, proto := range []ports.Protocol{ports.TCP, ports.UDP} {
			if !plan.ports.Contains(proto, port) || ports.Reserved(port) {
				continue
			}
			if sum.bound >= budget && !plan.explicit {
				in.n.log.Warn("inbound forwarding stopped to keep file descriptors for the guest's flows (raise RLIMIT_NOFILE or list --ports)",
					"sockets", sum.bound, "next_port", fmt.Sprintf("%d/%s", port, proto))
				sum.log(in.n.log)
				return nil
			}
			var err error
			if fam, err = in.bindFamily(proto, fam, port, &sum); err == nil {
				sum.bound++
				continue
			}
			if plan.explicit {
				return fmt.Errorf("forward port %d/%s: %w", port, proto, err)
			}
			if sum.skip(proto, port, err) {
				in.n.log.Warn("inbound forwarding stopped: out of file descriptors (raise RLIMIT_NOFILE or list --ports)",
					"sockets", sum.bound, "next_port", fmt.Sprintf("%d/%s", port, proto), "err", err)
				sum.log(in.n.log)
				return nil
			}
		}
	}
	sum.log(in.n.log)
	return nil
}

// bindFamily binds one port's socket of fam, falling back to IPv4 alone
// (and returning that family for the ports to come) when the pod has no
// IPv6.
func (in *inbound) bindFamily(proto ports.Protocol, fam Family, port uint16, sum *bindSummary) (Family, error) {
	err := in.bind(proto, fam, port)
	if err != nil && fam == DualStack && ipv6Missing(err) {
		sum.noIPv6, fam = true, IPv4
		err = in.bind(proto, fam, port)
	}
	return fam, err
}

// flowFDReserve is how many file descriptors forwarding every port leaves
// for everything else: the guest's outbound flows take one each, and
// without them the guest could not reach anything at all. Half the limit,
// at most 16384 (a busy VM's worth of connections).
func flowFDReserve(limit int) int { return min(limit/2, 16384) }

// fdBudget is how many inbound sockets forwarding every port may open
// with a file-descriptor limit of limit while open are already in use:
// what is left once the guest's flows have their reserve.
func fdBudget(limit, open int) int {
	return max(0, limit-open-flowFDReserve(limit))
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

// family is the family of the inbound sockets: one dual-stack socket per
// port when the guest has both families.
func (in *inbound) family() Family {
	switch p := in.n.cfg.Policy; {
	case p.Guest4.IsValid() && p.Guest6.IsValid():
		return DualStack
	case p.Guest6.IsValid():
		return IPv6
	}
	return IPv4
}

// bind opens one pod socket and watches it.
func (in *inbound) bind(proto ports.Protocol, fam Family, port uint16) error {
	fd, err := in.n.cfg.Pod.ListenInbound(proto, fam, port)
	if err != nil {
		return err
	}
	if sa, err := unix.Getsockname(fd); err == nil {
		if _, ok := sa.(*unix.SockaddrInet4); ok {
			fam = IPv4 // what the pod gave, whatever was asked
		}
	}
	s := &inSocket{fd: fd, proto: proto, family: fam, port: port}
	ready := func() { in.accept(s) }
	if proto == ports.UDP {
		ready = func() { in.readUDP(s) }
	}
	in.mu.Lock()
	in.socks = append(in.socks, s)
	in.mu.Unlock()
	return in.poll.add(fd, ready)
}

// run dispatches until close.
func (in *inbound) run() { in.poll.run() }

// stop makes run return; close then releases the sockets.
func (in *inbound) stop() { in.poll.stop() }

// close releases the poller and the sockets, after run has returned.
func (in *inbound) close() {
	in.poll.close()
	in.mu.Lock()
	in.closed = true
	for _, s := range in.socks {
		unix.Close(s.fd)
	}
	in.socks = nil
	in.mu.Unlock()
	in.udp.close()
}

// acceptPause is how long a listener rests when the process is out of
// file descriptors: level-triggered, it would otherwise wake the poller
// in a busy loop until one frees.
const acceptPause = 100 * time.Millisecond

// accept takes every pending connection of s and forwards each on its own
// goroutine, within MaxTCP (beyond it the client is reset at once).
func (in *inbound) accept(s *inSocket) {
	for {
		fd, sa, err := unix.Accept4(s.fd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		switch {
		case err == unix.EMFILE || err == unix.ENFILE:
			in.n.stats.inboundPaused.Add(1)
			in.poll.pause(s.fd, acceptPause)
			return
		case err != nil:
			return // EAGAIN: drained
		}
		if !in.n.reserveTCP() {
			resetFD(fd)
			continue
		}
		client := sockaddrToAddrPort(sa)
		if !in.n.reg.spawn(func() { defer in.n.releaseTCP(); in.forwardTCP(fd, client, s) }) {
			in.n.releaseTCP()
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
// from the client's own address, and splices the two.
func (in *inbound) forwardTCP(fd int, client netip.AddrPort, s *inSocket) {
	f := os.NewFile(uintptr(fd), "inbound")
	conn, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return
	}
	n := in.n
	src := n.cfg.Policy.seenFrom(client)
	dst := netip.AddrPortFrom(n.cfg.Policy.guestOf(src.Addr().Is6()), s.port)
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetKeepAlive(true) // a client that vanished must not hold the flow forever
	}
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.InboundDialTimeout)
	ep, wq, err := n.st.DialTCP(ctx, src, dst)
	cancel()
	if err != nil {
		n.stats.inboundRefused.Add(1)
		n.log.Debug("inbound connection not accepted by the guest", "client", client, "guest", dst, "err", err)
		resetConn(conn)
		return
	}
	flow := newTCPFlow(n.bufs, ep, wq, conn)
	if !n.reg.track(flow) {
		flow.abort()
		flow.close()
		return
	}
	defer n.reg.untrack(flow)
	n.stats.inboundTCP.Add(1)
	flow.splice()
}

// resetConn closes c with a RST.
func resetConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// sockaddrToAddrPort converts an accepted peer address.
func sockaddrToAddrPort(sa unix.Sockaddr) netip.AddrPort {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(sa.Port))
	}
	return netip.AddrPort{}
}

// ipv6Missing reports whether err says the pod has no IPv6.
func ipv6Missing(err error) bool {
	return errors.Is(err, unix.EAFNOSUPPORT) || errors.Is(err, unix.EADDRNOTAVAIL)
}
