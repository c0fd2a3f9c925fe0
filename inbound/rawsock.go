package inbound

import (
	"encoding/binary"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/masqnet/masq/internal/relay"
)

// recvFrom reads one datagram from a non-blocking socket into b without
// allocating (unix.Recvfrom allocates a Sockaddr per call). It returns
// unix.EAGAIN when there is none.
func recvFrom(fd int, b []byte, rsa *unix.RawSockaddrAny) (int, netip.AddrPort, error) {
	if len(b) == 0 {
		return 0, netip.AddrPort{}, unix.EINVAL
	}
	l := uint32(unix.SizeofSockaddrAny)
	n, _, errno := unix.Syscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)),
		unix.MSG_DONTWAIT, uintptr(unsafe.Pointer(rsa)), uintptr(unsafe.Pointer(&l)))
	if errno != 0 {
		return 0, netip.AddrPort{}, errno
	}
	return int(n), sockaddrAddrPort(rsa), nil
}

// sendTo writes one datagram to dst from a socket of dst's family (an
// IPv6 socket takes IPv4 destinations mapped) without allocating.
func sendTo(fd int, b []byte, dst netip.AddrPort, v6 bool) error {
	return relay.SendMsg(fd, b, nil, dst, v6)
}

// sockaddrAddrPort decodes an AF_INET or AF_INET6 socket address.
func sockaddrAddrPort(rsa *unix.RawSockaddrAny) netip.AddrPort {
	switch rsa.Addr.Family {
	case unix.AF_INET:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(rsa))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), port)
	case unix.AF_INET6:
		sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(rsa))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), port)
	}
	return netip.AddrPort{}
}
