package link

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// SocketAddr is where a Socket listens: a unix socket file or a TCP
// address. Exactly one of Path and TCP is set; make one with
// ParseSocketAddr.
type SocketAddr struct {
	// Path is the unix socket file's path.
	Path string
	// TCP is the TCP address; port 0 picks a free port.
	TCP netip.AddrPort
}

// ParseSocketAddr parses --socket: a unix socket path, or "tcp:" and an
// IP address and port ("tcp:127.0.0.1:5555", "tcp:[::1]:5555").
func ParseSocketAddr(s string) (SocketAddr, error) {
	if rest, ok := strings.CutPrefix(s, "tcp:"); ok {
		ap, err := netip.ParseAddrPort(rest)
		if err != nil {
			return SocketAddr{}, errors.New("want tcp:IP:PORT, like tcp:127.0.0.1:5555 (an IP address, not a name)")
		}
		return SocketAddr{TCP: ap}, nil
	}
	switch {
	case s == "":
		return SocketAddr{}, errors.New("a unix socket path or tcp:IP:PORT is required")
	case strings.HasSuffix(s, "/"):
		return SocketAddr{}, errors.New("names a directory; want a socket file's path")
	case len(s) > 107: // sun_path is 108 bytes with its terminating NUL
		return SocketAddr{}, fmt.Errorf("a unix socket path is at most 107 bytes (this one has %d); use a shorter path", len(s))
	}
	return SocketAddr{Path: s}, nil
}

// IsZero reports whether a names no socket at all.
func (a SocketAddr) IsZero() bool { return a.Path == "" && !a.TCP.IsValid() }

// IsTCP reports whether a is a TCP address.
func (a SocketAddr) IsTCP() bool { return a.Path == "" }

// String returns a as --socket takes it.
func (a SocketAddr) String() string {
	if a.IsTCP() {
		return "tcp:" + a.TCP.String()
	}
	return a.Path
}
