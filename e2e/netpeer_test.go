package e2e

import (
	"net"
	"strings"
	"testing"
	"time"
)

// peerReadyTimeout bounds a netpeer server's start (the HTTP server first
// makes its random body).
const peerReadyTimeout = 15 * time.Second

// startPeer runs the netpeer server `netpeer args...` in namespace ns
// until t ends, and waits until it listens.
func startPeer(t *testing.T, ns, name string, args ...string) *proc {
	t.Helper()
	p := startProc(t, name, "ip", append([]string{"netns", "exec", ns, peerBinary(t)}, args...)...)
	p.waitReady(t, "ready", peerReadyTimeout)
	return p
}

// seen returns the source addresses ("host:port") a netpeer server
// printed for proto ("tcp", "udp", "dns-udp", "dns-tcp"), in order.
func (p *proc) seen(proto string) []string {
	var out []string
	for _, line := range strings.Split(p.log(), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "seen" && f[1] == proto {
			out = append(out, f[2])
		}
	}
	return out
}

// runPeer runs the netpeer client `netpeer args...` in namespace ns for at
// most timeout and returns its exit code (-1 when killed) and output.
func runPeer(t *testing.T, ns string, timeout time.Duration, args ...string) (int, string) {
	t.Helper()
	return runBounded(timeout, "ip", append([]string{"netns", "exec", ns, peerBinary(t)}, args...)...)
}

// hostOf returns the address part of "host:port" or "[host]:port".
func hostOf(addrPort string) string {
	h, _, err := net.SplitHostPort(addrPort)
	if err != nil {
		return addrPort
	}
	return h
}

// portOf returns the port part of "host:port" or "[host]:port".
func portOf(addrPort string) string {
	_, p, _ := net.SplitHostPort(addrPort)
	return p
}

// field returns the value of key=VALUE in a netpeer output line, or "".
func field(out, key string) string {
	for _, f := range strings.Fields(out) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			return v
		}
	}
	return ""
}

// elapsed parses the elapsed=DURATION a netpeer client printed.
func elapsed(t *testing.T, out string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(field(out, "elapsed"))
	if err != nil {
		t.Fatalf("no elapsed= in netpeer's output %q", out)
	}
	return d
}
