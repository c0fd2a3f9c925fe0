package nat

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// rawPingConn proxies ICMP echo through a raw ICMP socket where the pod
// gives no ping socket (net.ipv4.ping_group_range excludes masq) but masq
// holds CAP_NET_RAW (root in a container keeps it by default). It is used
// like a ping socket: masq sends echo requests and reads echo replies,
// with an identifier of its own, chosen at random per socket, which a
// socket filter (BPF) matches so that the kernel hands the socket only
// the echo replies to its own requests, not every ICMP message the pod
// receives. Sends and reads allocate a socket address each (a raw socket
// has no allocation-free path in the standard library); echo is not a
// bulk path.
type rawPingConn struct {
	f     *os.File // owns the socket
	sock  *podSocket
	ident uint16
}

var (
	_ ErrorConn = (*rawPingConn)(nil)
	_ TTLConn   = (*rawPingConn)(nil)
)

// listenRawPing opens a raw ICMP socket of dst's family, filtered to echo
// replies with its identifier, its error queue on.
func listenRawPing(dst netip.Addr) (*rawPingConn, error) {
	family, proto := unix.AF_INET, unix.IPPROTO_ICMP
	if dst.Is6() {
		family, proto = unix.AF_INET6, unix.IPPROTO_ICMPV6
	}
	fd, err := unix.Socket(family, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return nil, fmt.Errorf("raw icmp socket: %w", err)
	}
	var id [2]byte
	rand.Read(id[:])
	ident := binary.BigEndian.Uint16(id[:])
	prog := echoReplyFilter(dst.Is6(), ident)
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER,
		&unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("raw icmp socket filter: %w", err)
	}
	f := os.NewFile(uintptr(fd), "raw-icmp") // non-blocking: the runtime's poller waits for it
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	sock, err := newPodSocket(rc, dst.Is6())
	if err != nil {
		f.Close()
		return nil, err
	}
	return &rawPingConn{f: f, sock: sock, ident: ident}, nil
}

// echoReplyFilter is a classic BPF program that accepts ICMP echo replies
// with identifier ident and drops everything else. An IPv4 raw socket's
// packets start at the IP header, an IPv6 one's at the ICMPv6 header.
func echoReplyFilter(six bool, ident uint16) []unix.SockFilter {
	const (
		accept = 0xffff
		drop   = 0
	)
	if six {
		return []unix.SockFilter{
			{Code: unix.BPF_LD | unix.BPF_B | unix.BPF_ABS, K: 0}, // type
			{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 3, K: uint32(header.ICMPv6EchoReply)},
			{Code: unix.BPF_LD | unix.BPF_H | unix.BPF_ABS, K: 4}, // identifier
			{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 1, K: uint32(ident)},
			{Code: unix.BPF_RET | unix.BPF_K, K: accept},
			{Code: unix.BPF_RET | unix.BPF_K, K: drop},
		}
	}
	return []unix.SockFilter{
		{Code: unix.BPF_LDX | unix.BPF_B | unix.BPF_MSH, K: 0}, // x = the IP header's length
		{Code: unix.BPF_LD | unix.BPF_B | unix.BPF_IND, K: 0},  // type
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 3, K: uint32(header.ICMPv4EchoReply)},
		{Code: unix.BPF_LD | unix.BPF_H | unix.BPF_IND, K: 4}, // identifier
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 1, K: uint32(ident)},
		{Code: unix.BPF_RET | unix.BPF_K, K: accept},
		{Code: unix.BPF_RET | unix.BPF_K, K: drop},
	}
}

// SyscallConn exposes the socket, so the flow waits for it without a
// buffer.
func (c *rawPingConn) SyscallConn() (syscall.RawConn, error) { return c.sock.rc, nil }

// Close closes the socket.
func (c *rawPingConn) Close() error { return c.f.Close() }

// WriteToUDPAddrPort sends the echo request b (an ICMP message, which it
// changes: its identifier becomes the socket's, and, over IPv4, its
// checksum is computed; the kernel computes ICMPv6's) to dst's address.
func (c *rawPingConn) WriteToUDPAddrPort(b []byte, dst netip.AddrPort) (int, error) {
	if len(b) < header.ICMPv4MinimumSize {
		return 0, fmt.Errorf("echo request of %d bytes: %w", len(b), syscall.EINVAL)
	}
	binary.BigEndian.PutUint16(b[4:6], c.ident)
	var sa unix.Sockaddr
	if a := dst.Addr(); a.Is4() || a.Is4In6() && !c.sock.six {
		b[2], b[3] = 0, 0
		binary.BigEndian.PutUint16(b[2:4], ^checksum.Checksum(b, 0))
		sa = &unix.SockaddrInet4{Addr: a.Unmap().As4()}
	} else {
		sa = &unix.SockaddrInet6{Addr: a.As16()}
	}
	var serr error
	err := c.sock.rc.Write(func(fd uintptr) bool {
		serr = unix.Sendto(int(fd), b, 0, sa)
		return serr != unix.EAGAIN
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return 0, err
	}
	return len(b), nil
}

// WriteToTTL implements TTLConn.WriteToTTL (see podSocket.setHeader).
func (c *rawPingConn) WriteToTTL(b []byte, dst netip.AddrPort, ttl uint8, df bool) (int, error) {
	c.sock.mu.Lock()
	defer c.sock.mu.Unlock()
	if err := c.sock.setHeaderLocked(ttl, df); err != nil {
		return 0, err
	}
	return c.WriteToUDPAddrPort(b, dst)
}

// ReadFromUDPAddrPort reads one echo reply into b (its ICMP message, the
// IPv4 header taken off) and who sent it. A message that is not one of
// the socket's replies (the filter lets none through; this is its second
// line) reads as 0 bytes from no address.
func (c *rawPingConn) ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error) {
	var (
		n    int
		from unix.Sockaddr
		rerr error
	)
	err := c.sock.rc.Read(func(fd uintptr) bool {
		n, from, rerr = unix.Recvfrom(int(fd), b, 0)
		return rerr != unix.EAGAIN
	})
	if err == nil {
		err = rerr
	}
	if err != nil {
		return 0, netip.AddrPort{}, err
	}
	msg := b[:n]
	if !c.sock.six {
		if len(msg) < header.IPv4MinimumSize {
			return 0, netip.AddrPort{}, nil
		}
		msg = msg[header.IPv4(msg).HeaderLength():]
	}
	reply := uint8(header.ICMPv4EchoReply)
	if c.sock.six {
		reply = uint8(header.ICMPv6EchoReply)
	}
	if len(msg) < header.ICMPv4MinimumSize || msg[0] != reply || binary.BigEndian.Uint16(msg[4:6]) != c.ident {
		return 0, netip.AddrPort{}, nil
	}
	m := copy(b, msg)
	var src netip.Addr
	switch sa := from.(type) {
	case *unix.SockaddrInet4:
		src = netip.AddrFrom4(sa.Addr)
	case *unix.SockaddrInet6:
		src = netip.AddrFrom16(sa.Addr).Unmap()
	}
	return m, netip.AddrPortFrom(src, 0), nil
}

// ReadPodError implements ErrorConn.ReadPodError: the errors about this
// socket's own requests only (the kernel gives every raw ICMP socket the
// errors about any ICMP message the pod sent).
func (c *rawPingConn) ReadPodError() (PodError, bool) {
	for {
		e, ok := c.sock.readError()
		if !ok {
			return e, false
		}
		if len(e.Head) >= 6 && binary.BigEndian.Uint16(e.Head[4:6]) == c.ident {
			return e, true
		}
	}
}
