package nat

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/masqnet/masq/internal/relay"
)

// kernelConn is a pod datagram socket of the kernel (UDP or ping) with
// IP_RECVERR / IPV6_RECVERR on: the ICMP errors its datagrams draw are
// queued on the socket's error queue, which ReadPodError reads, and a
// pending one fails the next read (ECONNREFUSED, EHOSTUNREACH…) once.
// Without it an unconnected socket never hears of them.
type kernelConn struct {
	*net.UDPConn
	rc  syscall.RawConn
	six bool

	ttlMu sync.Mutex // guards ttl and pmtud
	ttl   uint8      // the TTL (hop limit) last set; 0: the kernel's default
	pmtud int        // the IP_MTU_DISCOVER last set; -1: the kernel's default
}

var (
	_ ErrorConn = (*kernelConn)(nil)
	_ TTLConn   = (*kernelConn)(nil)
)

// newKernelConn turns on the error queue of c, a socket of IPv6 when six.
// It takes ownership of c.
func newKernelConn(c *net.UDPConn, six bool) (*kernelConn, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		c.Close()
		return nil, err
	}
	level, opt := unix.SOL_IP, unix.IP_RECVERR
	if six {
		level, opt = unix.SOL_IPV6, unix.IPV6_RECVERR
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), level, opt, 1) }); err != nil {
		serr = err
	}
	if serr != nil {
		c.Close()
		return nil, fmt.Errorf("recverr: %w", serr)
	}
	return &kernelConn{UDPConn: c, rc: rc, six: six, pmtud: -1}, nil
}

// WriteToTTL implements TTLConn.WriteToTTL: the TTL and, on an IPv4
// socket, path MTU discovery (on for df: IP_PMTUDISC_DO; off otherwise:
// IP_PMTUDISC_DONT) are socket options, set only when they change (a
// flow's datagrams normally share them; a traceroute's probes step the
// TTL).
func (c *kernelConn) WriteToTTL(b []byte, dst netip.AddrPort, ttl uint8, df bool) (int, error) {
	c.ttlMu.Lock()
	defer c.ttlMu.Unlock()
	if ttl != c.ttl {
		level, opt := unix.SOL_IP, unix.IP_TTL
		if c.six {
			level, opt = unix.SOL_IPV6, unix.IPV6_UNICAST_HOPS
		}
		if err := c.setsockopt(level, opt, int(ttl)); err != nil {
			return 0, fmt.Errorf("set ttl %d: %w", ttl, err)
		}
		c.ttl = ttl
	}
	if pmtud := unix.IP_PMTUDISC_DONT; !c.six {
		if df {
			pmtud = unix.IP_PMTUDISC_DO
		}
		if pmtud != c.pmtud {
			if err := c.setsockopt(unix.SOL_IP, unix.IP_MTU_DISCOVER, pmtud); err != nil {
				return 0, fmt.Errorf("set path mtu discovery %d: %w", pmtud, err)
			}
			c.pmtud = pmtud
		}
	}
	return c.UDPConn.WriteToUDPAddrPort(b, dst)
}

// setsockopt sets an integer option of the socket.
func (c *kernelConn) setsockopt(level, opt, value int) error {
	var serr error
	if err := c.rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), level, opt, value) }); err != nil {
		return err
	}
	return serr
}

// ReadPodError implements ErrorConn.ReadPodError: one message of the
// error queue, without blocking.
func (c *kernelConn) ReadPodError() (PodError, bool) {
	var (
		e  PodError
		ok bool
	)
	c.rc.Control(func(fd uintptr) {
		var p [8]byte // the failed datagram's head (PodError.Head)
		var oob [128]byte
		for {
			n, oobn, _, from, err := unix.Recvmsg(int(fd), p[:], oob[:], unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				return
			}
			e, ok = parsePodError(oob[:oobn], from)
			if ok {
				e.Head = append([]byte(nil), p[:min(n, len(p))]...)
				return
			}
			// a message not understood: skip to the next
		}
	})
	return e, ok
}

// parsePodError reads a sock_extended_err and its offender from control
// messages of an error queue read; from is the failed datagram's
// destination.
func parsePodError(oob []byte, from unix.Sockaddr) (PodError, bool) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return PodError{}, false
	}
	for _, m := range msgs {
		if !(m.Header.Level == unix.SOL_IP && m.Header.Type == unix.IP_RECVERR) &&
			!(m.Header.Level == unix.SOL_IPV6 && m.Header.Type == unix.IPV6_RECVERR) {
			continue
		}
		d := m.Data
		if len(d) < sizeofSockExtendedErr {
			continue
		}
		e := PodError{Dst: relay.AddrPort(from), Type: d[5], Code: d[6],
			Info: binary.NativeEndian.Uint32(d[8:12]), Errno: syscall.Errno(binary.NativeEndian.Uint32(d[0:4]))}
		switch d[4] {
		case unix.SO_EE_ORIGIN_ICMP:
			e.Origin = OriginICMP4
		case unix.SO_EE_ORIGIN_ICMP6:
			e.Origin = OriginICMP6
		default:
			e.Origin = OriginLocal
		}
		e.From = offender(d[sizeofSockExtendedErr:])
		return e, true
	}
	return PodError{}, false
}

// offender reads the sockaddr that follows a sock_extended_err
// (SO_EE_OFFENDER): who reported the error.
func offender(b []byte) netip.Addr {
	if len(b) < 2 {
		return netip.Addr{}
	}
	switch binary.NativeEndian.Uint16(b) {
	case unix.AF_INET:
		if len(b) >= 8 {
			return netip.AddrFrom4([4]byte(b[4:8]))
		}
	case unix.AF_INET6:
		if len(b) >= 24 {
			return netip.AddrFrom16([16]byte(b[8:24])).Unmap()
		}
	}
	return netip.Addr{}
}

// sizeofSockExtendedErr is the size of struct sock_extended_err: errno,
// origin, type, code, pad, info, data.
const sizeofSockExtendedErr = 16
