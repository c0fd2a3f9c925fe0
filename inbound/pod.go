package inbound

import (
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/masqnet/masq/ports"
)

// Pod is the pod side of inbound forwarding: the sockets of forwarded
// ports. The kernel implements it (KernelPod); tests bind loopback
// instead.
type Pod interface {
	// Listen opens a non-blocking socket on port of the pod's addresses of
	// family: listening, for TCP; bound, for UDP. The caller owns the
	// returned Socket. An error wrapping syscall.EADDRINUSE means
	// something else in the pod holds the port.
	Listen(proto ports.Protocol, family Family, port uint16) (*Socket, error)
	// EphemeralPorts is the pod's range of local ports for outgoing
	// connections (net.ipv4.ip_local_port_range), which forwarding every
	// port must leave alone.
	EphemeralPorts() (first, last uint16, err error)
}

// Socket is a pod socket of a forwarded port, owned by whoever holds it:
// Close releases it. The forwarder reads it with non-blocking system calls
// on its one poller goroutine.
type Socket struct {
	fd int
}

// NewSocket wraps fd, a non-blocking TCP listener or bound UDP socket,
// taking ownership of it.
func NewSocket(fd int) *Socket { return &Socket{fd: fd} }

// Close closes the socket.
func (s *Socket) Close() error { return unix.Close(s.fd) }

// Family is the address family of a forwarded port's socket.
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

// KernelPod opens the kernel's sockets in masq's own network namespace:
// the pod's.
type KernelPod struct{}

var _ Pod = KernelPod{}

// Listen implements Pod.Listen on the wildcard address of the family, so
// every pod address (loopback included) is forwarded.
func (KernelPod) Listen(proto ports.Protocol, fam Family, port uint16) (*Socket, error) {
	family, typ := unix.AF_INET, unix.SOCK_STREAM
	if fam != IPv4 {
		family = unix.AF_INET6
	}
	if proto == ports.UDP {
		typ = unix.SOCK_DGRAM
	}
	fd, err := unix.Socket(family, typ|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if err := bind(fd, proto, fam, port); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return NewSocket(fd), nil
}

// backlog is the accept queue of each forwarded TCP port: the kernel caps
// it at net.core.somaxconn.
const backlog = 4096

// bind binds fd to port on the wildcard address and listens (TCP).
func bind(fd int, proto ports.Protocol, fam Family, port uint16) error {
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
		return unix.Listen(fd, backlog)
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
