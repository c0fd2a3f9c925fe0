// Package testkit holds the small helpers masq's packages share in their
// tests without root: free ports, bounded waits, a UDP round trip and a
// loopback UDP echo. It is imported by tests only.
package testkit

import (
	"net"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"
)

// WaitFor polls cond every 10 ms for up to 5 s and fails tb, naming what
// it waited for, when cond never held.
func WaitFor(tb testing.TB, cond func() bool, what string) {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// UDPRoundTrip sends msg from c to dst and returns the first reply and
// its source, waiting at most timeout.
func UDPRoundTrip(c net.PacketConn, dst netip.AddrPort, msg string, timeout time.Duration) (string, netip.AddrPort, error) {
	if _, err := c.WriteTo([]byte(msg), net.UDPAddrFromAddrPort(dst)); err != nil {
		return "", netip.AddrPort{}, err
	}
	c.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 2048)
	n, from, err := c.ReadFrom(buf)
	if err != nil {
		return "", netip.AddrPort{}, err
	}
	return string(buf[:n]), from.(*net.UDPAddr).AddrPort(), nil
}

// FreePort returns a port free now for TCP and UDP on the IPv4 and IPv6
// loopback addresses and the IPv4 wildcard, or fails tb.
func FreePort(tb testing.TB) uint16 {
	tb.Helper()
	for try := 0; try < 20; try++ {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		port := uint16(ln.Addr().(*net.TCPAddr).Port)
		ln.Close()
		if PortFree(port) {
			return port
		}
	}
	tb.Fatal("no free port")
	return 0
}

// PortFree reports whether port is free for TCP and UDP on the loopback
// addresses and the IPv4 wildcard.
func PortFree(port uint16) bool {
	for _, addr := range []string{"127.0.0.1", "::1", "0.0.0.0"} {
		ap := netip.AddrPortFrom(netip.MustParseAddr(addr), port).String()
		ln, err := net.Listen("tcp", ap)
		if err != nil {
			return false
		}
		ln.Close()
		c, err := net.ListenPacket("udp", ap)
		if err != nil {
			return false
		}
		c.Close()
	}
	return true
}

// Itoa formats a port.
func Itoa(p uint16) string { return strconv.Itoa(int(p)) }

// IsTimeout reports whether err is a deadline's.
func IsTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// WriteInPieces writes data to c size bytes at a time, as an interactive
// protocol writes (the small-writes tests).
func WriteInPieces(c net.Conn, data []byte, size int) error {
	for len(data) > 0 {
		k := min(size, len(data))
		if _, err := c.Write(data[:k]); err != nil {
			return err
		}
		data = data[k:]
	}
	return nil
}

// UDPEcho is a loopback UDP server (127.0.0.1) that sends every datagram
// back to its sender until the test ends; it returns its address.
func UDPEcho(tb testing.TB) netip.AddrPort {
	tb.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	var wg sync.WaitGroup
	tb.Cleanup(func() { c.Close(); wg.Wait() })
	wg.Go(func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			c.WriteToUDPAddrPort(buf[:n], from)
		}
	})
	return netip.MustParseAddrPort(c.LocalAddr().String())
}
