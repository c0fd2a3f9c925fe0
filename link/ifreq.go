package link

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// linkExists reports whether an interface called name exists in the calling
// thread's network namespace.
func linkExists(name string) bool {
	_, err := ifIndex(name)
	return err == nil
}

// ifIndex returns the index of the interface called name.
func ifIndex(name string) (uint32, error) {
	return withIfreq(name, func(s int, req *unix.Ifreq) (uint32, error) {
		if err := unix.IoctlIfreq(s, unix.SIOCGIFINDEX, req); err != nil {
			return 0, err
		}
		return req.Uint32(), nil
	})
}

// configureLink sets the MTU of a tap masq created and brings the link up:
// the guest's side must be up before it can send its first frame.
func configureLink(name string, mtu uint32, created bool) error {
	_, err := withIfreq(name, func(s int, req *unix.Ifreq) (uint32, error) {
		if created && mtu != 0 {
			req.SetUint32(mtu)
			if err := unix.IoctlIfreq(s, unix.SIOCSIFMTU, req); err != nil {
				return 0, fmt.Errorf("set MTU %d: %w", mtu, err)
			}
		}
		if err := unix.IoctlIfreq(s, unix.SIOCGIFFLAGS, req); err != nil {
			return 0, fmt.Errorf("get flags: %w", err)
		}
		flags := req.Uint16()
		if flags&unix.IFF_UP != 0 {
			return 0, nil
		}
		req.SetUint16(flags | unix.IFF_UP)
		if err := unix.IoctlIfreq(s, unix.SIOCSIFFLAGS, req); err != nil {
			return 0, fmt.Errorf("set link up: %w", err)
		}
		return 0, nil
	})
	return err
}

// withIfreq runs f with a datagram socket in the calling thread's namespace
// and an ifreq naming name.
func withIfreq(name string, f func(s int, req *unix.Ifreq) (uint32, error)) (uint32, error) {
	req, err := unix.NewIfreq(name)
	if err != nil {
		return 0, fmt.Errorf("interface name %q: %w", name, err)
	}
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("socket for ioctl: %w", err)
	}
	defer unix.Close(s)
	return f(s, req)
}
