package nat

import (
	"syscall"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/header"
)

func TestGuestError(t *testing.T) {
	v4 := func(typ header.ICMPv4Type, code header.ICMPv4Code) PodError {
		return PodError{Origin: OriginICMP4, Type: uint8(typ), Code: uint8(code)}
	}
	v6 := func(typ header.ICMPv6Type, code header.ICMPv6Code) PodError {
		return PodError{Origin: OriginICMP6, Type: uint8(typ), Code: uint8(code)}
	}
	withInfo := func(e PodError, info uint32) PodError { e.Info = info; return e }
	for _, c := range []struct {
		name      string
		e         PodError
		guest4    bool
		typ, code uint8
		rest      uint32
		ok        bool
	}{
		{"v4 port unreachable", v4(header.ICMPv4DstUnreachable, header.ICMPv4PortUnreachable), true, 3, 3, 0, true},
		{"v4 net prohibited kept", v4(header.ICMPv4DstUnreachable, header.ICMPv4NetProhibited), true, 3, 9, 0, true},
		{"v4 time exceeded", v4(header.ICMPv4TimeExceeded, header.ICMPv4TTLExceeded), true, 11, 0, 0, true},
		{"v4 fragmentation needed", withInfo(v4(header.ICMPv4DstUnreachable, header.ICMPv4FragmentationNeeded), 1300), true, 3, 4, 1300, true},
		{"v4 fragmentation needed to a v6 guest", withInfo(v4(header.ICMPv4DstUnreachable, header.ICMPv4FragmentationNeeded), 1300), false, 0, 0, 0, false},
		{"v4 redirect", v4(header.ICMPv4Redirect, 0), true, 0, 0, 0, false},
		{"v6 port unreachable", v6(header.ICMPv6DstUnreachable, header.ICMPv6PortUnreachable), false, 1, 4, 0, true},
		{"v6 hop limit", v6(header.ICMPv6TimeExceeded, header.ICMPv6HopLimitExceeded), false, 3, 0, 0, true},
		{"v6 packet too big", withInfo(v6(header.ICMPv6PacketTooBig, 0), 1400), false, 2, 0, 1400, true},
		{"v6 packet too big to a v4 guest", withInfo(v6(header.ICMPv6PacketTooBig, 0), 1400), true, 0, 0, 0, false},
		{"local message too long", PodError{Origin: OriginLocal, Errno: syscall.EMSGSIZE, Info: 1280}, true, 3, 4, 1280, true},
		{"local message too long, v6", PodError{Origin: OriginLocal, Errno: syscall.EMSGSIZE, Info: 1300}, false, 2, 0, 1300, true},
		{"local message too long without an mtu", PodError{Origin: OriginLocal, Errno: syscall.EMSGSIZE}, true, 0, 0, 0, false},
		{"local refused", PodError{Origin: OriginLocal, Errno: syscall.ECONNREFUSED}, true, 0, 0, 0, false},
		{"v4 port to a v6 guest", v4(header.ICMPv4DstUnreachable, header.ICMPv4PortUnreachable), false, 1, 4, 0, true},
		{"v4 host to a v6 guest", v4(header.ICMPv4DstUnreachable, header.ICMPv4HostUnreachable), false, 1, 3, 0, true},
		{"v4 time exceeded to a v6 guest", v4(header.ICMPv4TimeExceeded, header.ICMPv4TTLExceeded), false, 3, 0, 0, true},
		{"v6 port to a v4 guest", v6(header.ICMPv6DstUnreachable, header.ICMPv6PortUnreachable), true, 3, 3, 0, true},
		{"v6 admin to a v4 guest", v6(header.ICMPv6DstUnreachable, header.ICMPv6Prohibited), true, 3, 1, 0, true},
		{"local", PodError{Origin: OriginLocal, Type: 3, Code: 3}, true, 0, 0, 0, false},
	} {
		typ, code, rest, ok := guestError(c.e, c.guest4)
		if typ != c.typ || code != c.code || rest != c.rest || ok != c.ok {
			t.Errorf("%s: got %d/%d/%d %v, want %d/%d/%d %v", c.name, typ, code, rest, ok, c.typ, c.code, c.rest, c.ok)
		}
	}
}
