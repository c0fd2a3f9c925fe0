package nat

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// Pod is the pod side of masq: how flows reach the world. The kernel's
// sockets implement it (KernelPod); tests inject loopback servers or
// failures through it.
type Pod interface {
	// DialTCP connects to dst from the pod. It returns when connected,
	// refused (an error wrapping syscall.ECONNREFUSED), unreachable, or
	// when ctx ends.
	DialTCP(ctx context.Context, dst netip.AddrPort) (net.Conn, error)

	// ListenUDP opens an unconnected UDP socket of dst's family that can
	// send to any address, bound to port when port is free (as kernel
	// MASQUERADE tries to keep the source port) and to an ephemeral
	// port otherwise.
	ListenUDP(dst netip.Addr, port uint16) (UDPConn, error)

	// ListenPing opens an ICMP echo socket of dst's family, used like a
	// UDP socket: each datagram is an ICMP echo message (request out,
	// reply in) whose identifier the pod's kernel chooses; the port of
	// an address is unused. It fails when the pod allows no ping sockets.
	ListenPing(dst netip.Addr) (UDPConn, error)
}

// UDPConn is the part of *net.UDPConn that UDP flows use; the methods do
// not allocate.
type UDPConn interface {
	ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error)
	WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error)
	Close() error
}

// ErrorConn is a UDPConn that reports the ICMP errors its datagrams drew
// (the kernel's sockets do, with IP_RECVERR). A pending error makes its
// next read fail with the error's errno (ECONNREFUSED, EHOSTUNREACH…)
// rather than end the socket; ReadPodError then returns the queued
// errors one by one. A UDPConn that is not an ErrorConn reports none.
type ErrorConn interface {
	UDPConn
	// ReadPodError returns the oldest queued error without blocking;
	// false when there is none.
	ReadPodError() (PodError, bool)
}

// TTLConn is a UDPConn that can send with a given TTL (hop limit), so a
// guest datagram leaves the pod one hop older than it came, as through a
// router, and, over IPv4, with the guest's "don't fragment" bit: df on,
// the datagram is never fragmented (a path MTU too small for it draws
// "fragmentation needed", from a router or from the pod's own stack);
// off, it may be. A UDPConn that is not a TTLConn sends with its
// defaults.
type TTLConn interface {
	UDPConn
	WriteToTTL(b []byte, dst netip.AddrPort, ttl uint8, df bool) (int, error)
}

// GSOConn is a TTLConn that sends several datagrams in one call: b holds
// them back to back, each size bytes but the last, which may be shorter,
// and the kernel cuts them apart (UDP generic segmentation offload). At
// most MaxGSOSegments datagrams and MaxGSOBytes bytes go in one call. An
// error means none was sent: the caller sends them one by one.
type GSOConn interface {
	TTLConn
	WriteGSO(b []byte, size int, dst netip.AddrPort, ttl uint8, df bool) error
}

// Bounds of one GSOConn.WriteGSO: the kernel's UDP_MAX_SEGMENTS (64 until
// Linux 6.x raised it) and what fits one IP packet's length field with
// room for the headers.
const (
	MaxGSOSegments = 64
	MaxGSOBytes    = 65000
)

// TTLDialer is a Pod that can dial with a given TTL (hop limit) on the
// connection's SYN, so a guest's TCP traceroute probe expires where it
// would through a router. Its dial then fails with a *DialError when an
// ICMP error (time exceeded, unreachable) ended it, saying who reported
// it; the connection, once made, sends with the pod's default TTL.
type TTLDialer interface {
	Pod
	DialTCPTTL(ctx context.Context, dst netip.AddrPort, ttl uint8) (net.Conn, error)
}

// DialError is a dial that an ICMP error ended.
type DialError struct {
	// Err is the dial's error (EHOSTUNREACH for time exceeded…).
	Err error
	// PodError is the ICMP error (Head is the SYN's first 8 bytes).
	PodError
}

// Error implements error.
func (e *DialError) Error() string { return e.Err.Error() }

// Unwrap returns the dial's error.
func (e *DialError) Unwrap() error { return e.Err }

// PodError is an ICMP error (or a local one) a pod socket's datagram drew.
type PodError struct {
	// Dst is the failed datagram's destination, as the flow sent it.
	Dst netip.AddrPort
	// From reported the error: Dst's host for a port unreachable, a
	// router on the way for most others; invalid when unknown.
	From netip.Addr
	// Origin says what Type and Code are.
	Origin ErrorOrigin
	// Type and Code are the ICMP (ICMPv6 for OriginICMP6) type and code.
	Type, Code uint8
	// Head is the start of the failed datagram's payload, up to 8 bytes:
	// for an echo request its ICMP header, whose sequence number tells
	// which of a flow's requests it was.
	Head []byte
	// Info is the ICMP message's extra field (the next hop's MTU for
	// "fragmentation needed" / "packet too big"; the path MTU for a
	// local EMSGSIZE).
	Info uint32
	// Errno is the error the socket reports for it (ECONNREFUSED,
	// EHOSTUNREACH, EMSGSIZE…); for OriginLocal it is all there is.
	Errno syscall.Errno
}

// ErrorOrigin says where a PodError came from.
type ErrorOrigin uint8

// The origins of PodErrors (the kernel's SO_EE_ORIGIN_*).
const (
	OriginLocal ErrorOrigin = iota // the pod's own stack, not an ICMP message
	OriginICMP4
	OriginICMP6
)

// KernelPod reaches the world through the kernel's sockets in masq's own
// network namespace: the pod's.
type KernelPod struct {
	// NoRawPing: ICMP echo goes through ping sockets only, never raw
	// ICMP sockets, so masq needs no CAP_NET_RAW after setup (guest
	// pings to the world then go unanswered where the pod gives no ping
	// socket).
	NoRawPing bool
}

var _ Pod = KernelPod{}

// DialTCP implements Pod.DialTCP.
func (KernelPod) DialTCP(ctx context.Context, dst netip.AddrPort) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", dst.String())
}

// ListenUDP implements Pod.ListenUDP.
func (KernelPod) ListenUDP(dst netip.Addr, port uint16) (UDPConn, error) {
	network, any := "udp4", netip.IPv4Unspecified()
	if dst.Is6() {
		network, any = "udp6", netip.IPv6Unspecified()
	}
	c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(any, port)))
	if err != nil && port != 0 { // taken, or privileged: any port will do
		c, err = net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(any, 0)))
	}
	if err != nil {
		return nil, fmt.Errorf("pod udp socket: %w", err)
	}
	return newKernelConn(c, dst.Is6())
}

// ListenPing implements Pod.ListenPing with an unprivileged ICMP datagram
// socket ("ping socket"), which the kernel allows to the groups in
// net.ipv4.ping_group_range (for IPv6 too), and where that range excludes
// masq, with a raw ICMP socket, which needs CAP_NET_RAW.
func (p KernelPod) ListenPing(dst netip.Addr) (UDPConn, error) {
	c, err := listenPing(dst)
	if err == nil {
		return c, nil
	}
	if p.NoRawPing || !errors.Is(err, syscall.EACCES) && !errors.Is(err, syscall.EPERM) {
		return nil, err
	}
	raw, rerr := listenRawPing(dst)
	if rerr != nil {
		return nil, fmt.Errorf("%w; %w", err, rerr)
	}
	return raw, nil
}

// listenPing opens a ping socket of dst's family.
func listenPing(dst netip.Addr) (UDPConn, error) {
	family, proto := unix.AF_INET, unix.IPPROTO_ICMP
	if dst.Is6() {
		family, proto = unix.AF_INET6, unix.IPPROTO_ICMPV6
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return nil, fmt.Errorf("ping socket: %w", err)
	}
	f := os.NewFile(uintptr(fd), "ping")
	defer f.Close() // FilePacketConn dups it
	pc, err := net.FilePacketConn(f)
	if err != nil {
		return nil, fmt.Errorf("ping socket: %w", err)
	}
	c, ok := pc.(*net.UDPConn)
	if !ok {
		pc.Close()
		return nil, fmt.Errorf("ping socket: unexpected %T", pc)
	}
	kc, err := newKernelConn(c, dst.Is6())
	if err != nil {
		return nil, err
	}
	return kc, nil
}
