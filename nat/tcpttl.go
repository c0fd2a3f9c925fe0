package nat

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// probeTTL is the highest guest SYN TTL (hop limit) masq keeps on the
// pod's SYN: below it a SYN is a probe (traceroute -T counts up from 1;
// its default limit is 30 hops), at or above it a connection (operating
// systems start at 64, 128 or 255), which leaves with the pod's default
// TTL and costs no extra system call.
const probeTTL = 32

// dialTCP dials dst from the pod for the guest SYN id; a probe's SYN
// (see probeTTL) leaves with the guest's TTL less one.
func (n *NAT) dialTCP(ctx context.Context, id gstack.TransportEndpointID, dst netip.AddrPort) (net.Conn, error) {
	if td, ok := n.cfg.Pod.(TTLDialer); ok {
		if ttl := n.syns.guestTTL(id); ttl > 1 && ttl <= probeTTL {
			return td.DialTCPTTL(ctx, dst, ttl-1)
		}
	}
	return n.cfg.Pod.DialTCP(ctx, dst)
}

// relayDialError sends the guest the ICMP error that ended a dial for its
// SYN (quoted), from who reported it (see errorSource); dst is where the
// guest sent the SYN. It reports false when err carries no such error.
func (n *NAT) relayDialError(src, dst netip.AddrPort, err error, quote []byte) bool {
	var de *DialError
	if !errors.As(err, &de) || quote == nil {
		return false
	}
	guest := src.Addr()
	typ, code, rest, ok := guestError(de.PodError, guest.Is4())
	if !ok {
		return false
	}
	from := errorSource(de.PodError, de.Dst.Addr().Unmap(), dst.Addr(), n.errs.gateway(guest), guest)
	if err := n.errs.send(from, guest, typ, code, rest, quote); err != nil {
		n.log.Debug("icmp error to guest", "from", from, "err", err)
	}
	return true
}

// DialTCPTTL implements TTLDialer.DialTCPTTL: the socket's TTL (hop
// limit) is ttl and its error queue on while it connects; a dial that
// fails keeps a second descriptor of the socket to read the ICMP error
// from; a connection made gets the defaults back.
func (KernelPod) DialTCPTTL(ctx context.Context, dst netip.AddrPort, ttl uint8) (net.Conn, error) {
	six := dst.Addr().Is6() && !dst.Addr().Is4In6()
	ttlLevel, ttlOpt, errOpt := unix.SOL_IP, unix.IP_TTL, unix.IP_RECVERR
	if six {
		ttlLevel, ttlOpt, errOpt = unix.SOL_IPV6, unix.IPV6_UNICAST_HOPS, unix.IPV6_RECVERR
	}
	dup := -1
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			if serr = unix.SetsockoptInt(int(fd), ttlLevel, ttlOpt, int(ttl)); serr != nil {
				return
			}
			if serr = unix.SetsockoptInt(int(fd), ttlLevel, errOpt, 1); serr != nil {
				return
			}
			dup, serr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	c, err := d.DialContext(ctx, "tcp", dst.String())
	if dup >= 0 {
		defer unix.Close(dup)
	}
	if err != nil {
		if dup >= 0 {
			if e, ok := readDialError(dup); ok {
				return nil, &DialError{Err: err, PodError: e}
			}
		}
		return nil, err
	}
	if sc, ok := c.(syscall.Conn); ok {
		if rc, rerr := sc.SyscallConn(); rerr == nil {
			rc.Control(func(fd uintptr) {
				unix.SetsockoptInt(int(fd), ttlLevel, ttlOpt, -1) // the route's default
				unix.SetsockoptInt(int(fd), ttlLevel, errOpt, 0)
			})
		}
	}
	return c, nil
}

// readDialError reads the ICMP error queued on a failed connect's socket.
func readDialError(fd int) (PodError, bool) {
	var p [8]byte
	var oob [128]byte
	for {
		n, oobn, _, from, err := unix.Recvmsg(fd, p[:], oob[:], unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return PodError{}, false
		}
		if e, ok := parsePodError(oob[:oobn], from); ok {
			e.Head = append([]byte(nil), p[:min(n, len(p))]...)
			return e, true
		}
	}
}
