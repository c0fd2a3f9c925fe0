package nat

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/masqnet/masq/internal/relay"
)

// kernelConn is a pod datagram socket of the kernel (UDP or ping) with
// IP_RECVERR / IPV6_RECVERR on: the ICMP errors its datagrams draw are
// queued on the socket's error queue, which ReadPodError reads, and a
// pending one fails the next read (ECONNREFUSED, EHOSTUNREACH…) once.
// Without it an unconnected socket never hears of them.
//
// Its sends never wait: where the socket's send buffer is full (a pod link
// slower than the guest sends, the datagrams queued below the socket) the
// datagram is dropped with EAGAIN, as a router's full queue drops it,
// instead of stalling the guest's link reader, and every flow with it,
// until the queue drains.
type kernelConn struct {
	*net.UDPConn
	sock *podSocket
	gso  [32]byte // WriteGSO's control message (gsoCmsgSpace of it), under sock.mu

	// The send in progress, for sendNow; under sock.mu.
	out struct {
		b, oob []byte
		dst    netip.AddrPort
		err    error
	}
	sendNow func(fd uintptr) bool // c.sendOut, bound once: no allocation per send
}

var (
	_ ErrorConn = (*kernelConn)(nil)
	_ GSOConn   = (*kernelConn)(nil)
)

// gsoCmsgSpace is the room for a UDP_SEGMENT control message (a uint16).
var gsoCmsgSpace = unix.CmsgSpace(2)

// newKernelConn turns on the error queue of c, a socket of IPv6 when six.
// It takes ownership of c.
func newKernelConn(c *net.UDPConn, six bool) (*kernelConn, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		c.Close()
		return nil, err
	}
	sock, err := newPodSocket(rc, six)
	if err != nil {
		c.Close()
		return nil, err
	}
	kc := &kernelConn{UDPConn: c, sock: sock}
	kc.sendNow = kc.sendOut
	return kc, nil
}

// WriteToUDPAddrPort sends b to dst as the last send's header left it,
// without waiting (see kernelConn).
func (c *kernelConn) WriteToUDPAddrPort(b []byte, dst netip.AddrPort) (int, error) {
	c.sock.mu.Lock()
	defer c.sock.mu.Unlock()
	if err := c.sendLocked(b, nil, dst); err != nil {
		return 0, err
	}
	return len(b), nil
}

// sendLocked sends b with the control message oob to dst on the socket,
// once, without waiting. A failed send returns its syscall.Errno as it is:
// under a full send buffer every datagram fails so, and wrapping each
// would allocate per packet. c.sock.mu is held.
func (c *kernelConn) sendLocked(b, oob []byte, dst netip.AddrPort) error {
	c.out.b, c.out.oob, c.out.dst, c.out.err = b, oob, dst, nil
	err := c.sock.rc.Write(c.sendNow)
	c.out.b, c.out.oob = nil, nil
	if err != nil {
		return err // closed
	}
	return c.out.err
}

// sendOut makes the send c.out describes; it never asks the poller to
// wait.
func (c *kernelConn) sendOut(fd uintptr) bool {
	c.out.err = relay.SendMsg(int(fd), c.out.b, c.out.oob, c.out.dst, c.sock.six)
	return true
}

// WriteToTTL implements TTLConn.WriteToTTL (see podSocket.setHeader).
func (c *kernelConn) WriteToTTL(b []byte, dst netip.AddrPort, ttl uint8, df bool) (int, error) {
	c.sock.mu.Lock()
	defer c.sock.mu.Unlock()
	if err := c.sock.setHeaderLocked(ttl, df); err != nil {
		return 0, err
	}
	if err := c.sendLocked(b, nil, dst); err != nil {
		return 0, err
	}
	return len(b), nil
}

// WriteGSO implements GSOConn.WriteGSO: one sendmsg with a UDP_SEGMENT
// control message (Linux 4.18), with ttl and df as in WriteToTTL (ttl 0:
// as the last send left them).
func (c *kernelConn) WriteGSO(b []byte, size int, dst netip.AddrPort, ttl uint8, df bool) error {
	c.sock.mu.Lock()
	defer c.sock.mu.Unlock()
	if ttl > 0 {
		if err := c.sock.setHeaderLocked(ttl, df); err != nil {
			return err
		}
	}
	h := (*unix.Cmsghdr)(unsafe.Pointer(&c.gso[0]))
	h.Level, h.Type = unix.SOL_UDP, unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	binary.NativeEndian.PutUint16(c.gso[unix.CmsgLen(0):], uint16(size))
	return c.sendLocked(b, c.gso[:gsoCmsgSpace], dst)
}

// ReadPodError implements ErrorConn.ReadPodError.
func (c *kernelConn) ReadPodError() (PodError, bool) { return c.sock.readError() }

// podSocket is what the pod's datagram sockets (UDP, ping, raw ICMP)
// share: the header fields of the next send, set as socket options, and
// the error queue.
type podSocket struct {
	rc  syscall.RawConn
	six bool

	mu    sync.Mutex // guards ttl and pmtud; held across the send they are for
	ttl   uint8      // the TTL (hop limit) last set; 0: the kernel's default
	pmtud int        // the IP_MTU_DISCOVER last set; -1: the kernel's default
}

// newPodSocket turns on the error queue (IP_RECVERR or IPV6_RECVERR) of
// the socket rc, of IPv6 when six.
func newPodSocket(rc syscall.RawConn, six bool) (*podSocket, error) {
	s := &podSocket{rc: rc, six: six, pmtud: -1}
	level, opt := unix.SOL_IP, unix.IP_RECVERR
	if six {
		level, opt = unix.SOL_IPV6, unix.IPV6_RECVERR
	}
	if err := s.setsockopt(level, opt, 1); err != nil {
		return nil, fmt.Errorf("recverr: %w", err)
	}
	return s, nil
}

// setHeaderLocked makes the next send leave with TTL ttl and, on an IPv4
// socket, path MTU discovery on for df (IP_PMTUDISC_DO: never
// fragmented) and off otherwise (IP_PMTUDISC_DONT). They are socket
// options, set only when they change (a flow's datagrams normally share
// them; a traceroute's probes step the TTL). s.mu must be held.
func (s *podSocket) setHeaderLocked(ttl uint8, df bool) error {
	if ttl != s.ttl {
		level, opt := unix.SOL_IP, unix.IP_TTL
		if s.six {
			level, opt = unix.SOL_IPV6, unix.IPV6_UNICAST_HOPS
		}
		if err := s.setsockopt(level, opt, int(ttl)); err != nil {
			return fmt.Errorf("set ttl %d: %w", ttl, err)
		}
		s.ttl = ttl
	}
	if s.six {
		return nil
	}
	pmtud := unix.IP_PMTUDISC_DONT
	if df {
		pmtud = unix.IP_PMTUDISC_DO
	}
	if pmtud != s.pmtud {
		if err := s.setsockopt(unix.SOL_IP, unix.IP_MTU_DISCOVER, pmtud); err != nil {
			return fmt.Errorf("set path mtu discovery %d: %w", pmtud, err)
		}
		s.pmtud = pmtud
	}
	return nil
}

// setsockopt sets an integer option of the socket.
func (s *podSocket) setsockopt(level, opt, value int) error {
	var serr error
	if err := s.rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), level, opt, value) }); err != nil {
		return err
	}
	return serr
}

// readError reads one message of the error queue, without blocking.
func (s *podSocket) readError() (PodError, bool) {
	var (
		e  PodError
		ok bool
	)
	s.rc.Control(func(fd uintptr) {
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
