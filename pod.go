package masq

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
)

// podLink is what masq learns about the pod's side before it starts.
type podLink struct {
	name string
	mtu  int
}

// findPodLink returns the pod interface named name, or the interface of the
// default route when name is empty.
func findPodLink(name string) (podLink, error) {
	if name == "" {
		var err error
		if name, err = defaultRouteInterface(); err != nil {
			return podLink{}, fmt.Errorf("--pod-interface not given and %w; name the pod's interface", err)
		}
	}
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return podLink{}, fmt.Errorf("--pod-interface %q: %w", name, err)
	}
	return podLink{name: ifc.Name, mtu: ifc.MTU}, nil
}

// defaultRouteInterface reads the kernel's routing tables for the interface
// of the IPv4 default route, falling back to the IPv6 one.
func defaultRouteInterface() (string, error) {
	tables := []struct {
		path  string
		parse func(io.Reader) (string, bool)
	}{
		{"/proc/net/route", defaultRoute4},
		{"/proc/net/ipv6_route", defaultRoute6},
	}
	for _, t := range tables {
		f, err := os.Open(t.path)
		if err != nil {
			continue
		}
		name, ok := t.parse(f)
		f.Close()
		if ok {
			return name, nil
		}
	}
	return "", errors.New("this network namespace has no default route")
}

// defaultRoute4 finds the default route in /proc/net/route's format:
// "Iface Destination Gateway Flags RefCnt Use Metric Mask ...", hex fields.
func defaultRoute4(r io.Reader) (string, bool) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 8 && f[1] == "00000000" && f[7] == "00000000" {
			return f[0], true
		}
	}
	return "", false
}

// defaultRoute6 finds the default route in /proc/net/ipv6_route's format:
// "dest destlen src srclen nexthop metric refcnt use flags iface". The
// kernel lists unreachable defaults on lo; those are skipped.
func defaultRoute6(r io.Reader) (string, bool) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 10 && f[1] == "00" && strings.Trim(f[0], "0") == "" && f[9] != "lo" {
			return f[9], true
		}
	}
	return "", false
}
