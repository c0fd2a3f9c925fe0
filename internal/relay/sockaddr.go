package relay

import (
	"net/netip"

	"golang.org/x/sys/unix"
)

// AddrPort converts a kernel socket address (an accepted peer, a
// recvmsg source) to a netip.AddrPort, v4-mapped IPv6 unmapped; the zero
// AddrPort for any other kind.
func AddrPort(sa unix.Sockaddr) netip.AddrPort {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr).Unmap(), uint16(a.Port))
	}
	return netip.AddrPort{}
}
