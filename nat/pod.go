package nat

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/masqnet/masq/ports"
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

	// ListenInbound opens a non-blocking socket on port of the pod's
	// addresses of family: listening, for TCP; bound, for UDP. The caller
	// owns the returned file descriptor. An error wrapping
	// syscall.EADDRINUSE means something else in the pod holds the port.
	ListenInbound(proto ports.Protocol, family Family, port uint16) (int, error)

	// EphemeralPorts is the pod's range of local ports for outgoing
	// connections (net.ipv4.ip_local_port_range), which inbound
	// forwarding must leave alone.
	EphemeralPorts() (first, last uint16, err error)
}

// UDPConn is the part of *net.UDPConn that UDP flows use; the methods do
// not allocate.
type UDPConn interface {
	ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error)
	WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error)
	Close() error
}

// KernelPod reaches the world through the kernel's sockets in masq's own
// network namespace: the pod's.
type KernelPod struct{}

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
	return c, nil
}

// ListenPing implements Pod.ListenPing with an unprivileged ICMP datagram
// socket ("ping socket"), which the kernel allows to the groups in
// net.ipv4.ping_group_range (for IPv6 too).
func (KernelPod) ListenPing(dst netip.Addr) (UDPConn, error) {
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
	return c, nil
}

// Family is the address family of an inbound socket.
type Family uint8

// The families: IPv4 alone, IPv6 alone, or one IPv6 socket that takes
// IPv4 clients too (as v4-mapped addresses), which halves the sockets
// forwarding every port costs.
const (
	IPv4 Family = iota + 1
	IPv6
	DualStack
)

// String names the family.
func (f Family) String() string {
	return [...]string{"?", "IPv4", "IPv6", "IPv4+IPv6"}[min(int(f), 3)]
}

// ListenInbound implements Pod.ListenInbound on the wildcard address of
// the family, so every pod address (loopback included) is forwarded.
func (KernelPod) ListenInbound(proto ports.Protocol, fam Family, port uint16) (int, error) {
	family, typ := unix.AF_INET, unix.SOCK_STREAM
	if fam != IPv4 {
		family = unix.AF_INET6
	}
	if proto == ports.UDP {
		typ = unix.SOCK_DGRAM
	}
	fd, err := unix.Socket(family, typ|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if err := bindInbound(fd, proto, fam, port); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// inboundBacklog is the accept queue of each forwarded TCP port: the
// kernel caps it at net.core.somaxconn.
const inboundBacklog = 4096

// bindInbound binds fd to port on the wildcard address and listens (TCP).
func bindInbound(fd int, proto ports.Protocol, fam Family, port uint16) error {
	var sa unix.Sockaddr = &unix.SockaddrInet4{Port: int(port)}
	if fam != IPv4 {
		v6only := 0
		if fam == IPv6 {
			v6only = 1
		}
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, v6only); err != nil {
			return err
		}
		sa = &unix.SockaddrInet6{Port: int(port)}
	}
	if proto == ports.TCP {
		// Rebinding a port whose old connections sit in TIME_WAIT (masq
		// restarted) must work.
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
			return err
		}
	}
	if err := unix.Bind(fd, sa); err != nil {
		return err
	}
	if proto == ports.TCP {
		return unix.Listen(fd, inboundBacklog)
	}
	return nil
}

// EphemeralPorts implements Pod.EphemeralPorts.
func (KernelPod) EphemeralPorts() (first, last uint16, err error) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, 0, err
	}
	return parsePortRange(string(b))
}

// parsePortRange parses ip_local_port_range's "FIRST\tLAST".
func parsePortRange(s string) (first, last uint16, err error) {
	var f, l uint16
	if _, err := fmt.Sscan(s, &f, &l); err != nil || f == 0 || f > l {
		return 0, 0, fmt.Errorf("ip_local_port_range %q: want two ports, first <= last", strings.TrimSpace(s))
	}
	return f, l, nil
}
