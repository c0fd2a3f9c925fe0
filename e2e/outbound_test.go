package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	// blobSize is the body the guest fetches over HTTP.
	blobSize = 64 << 20
	// fetchTimeout bounds one fetch of the blob.
	fetchTimeout = 60 * time.Second
	// httpPort, echoPort and closedPort are ports on the outside host:
	// its HTTP server, its TCP and UDP echo servers, and one nothing
	// listens on.
	httpPort   = "8080"
	echoPort   = "7007"
	closedPort = "7999"
	// guestUDPPort is the guest's source port for UDP; masq keeps it when
	// it is free in the pod.
	guestUDPPort = "40001"
)

// TestOutboundHTTP4: a guest that got its lease by DHCP fetches 64 MiB
// over HTTP from the outside host through masq: the body arrives whole
// (sha256 equal to the server's) and the server saw the pod's address, not
// the guest's.
func TestOutboundHTTP4(t *testing.T) { outboundHTTP4(t, jumboMTU) }

// TestOutboundHTTP4NoOffload: the same with --no-offload, masq's plain
// frame path (gVisor's fdbased endpoint, one frame per system call).
func TestOutboundHTTP4NoOffload(t *testing.T) { outboundHTTP4(t, 1500, "--no-offload") }

// outboundHTTP4 is TestOutboundHTTP4 at mtu with masqArgs.
func outboundHTTP4(t *testing.T, mtu int, masqArgs ...string) {
	tp := newTopology(t, mtu)
	srv := startPeer(t, tp.Out, "http server", "http",
		"-listen", outAddr4+":"+httpPort, "-size", strconv.Itoa(blobSize))
	startMasq(t, tp, "masq", masqArgs...)
	if code, out, _ := newUDHCPC(t, tp).run(t); code != 0 {
		t.Fatalf("udhcpc exited %d:\n%s", code, out)
	}
	checkGuestAddr(t, tp)
	fetchBlob(t, tp, "http://"+outAddr4+":"+httpPort+"/blob", srv, podAddr4)
}

// TestOutboundHTTP6: the same over IPv6, with the guest's static
// fd10:0:2::2 (which passes DAD: masq answers only for the gateway), at the
// usual MTU of 1500.
func TestOutboundHTTP6(t *testing.T) {
	tp := newTopology(t, 1500)
	srv := startPeer(t, tp.Out, "http server", "http",
		"-listen", "["+outAddr6+"]:"+httpPort, "-size", strconv.Itoa(blobSize))
	startMasq(t, tp, "masq")
	guestStatic6(t, tp, true)
	fetchBlob(t, tp, "http://["+outAddr6+"]:"+httpPort+"/blob", srv, podAddr6)
}

// fetchBlob fetches url with curl in the guest and fails t unless the body
// has blobSize bytes whose sha256 is the one the server sent, and the
// server saw exactly one client, from wantSrc.
func fetchBlob(t *testing.T, tp *topology, url string, srv *proc, wantSrc string) {
	t.Helper()
	requireTool(t, "curl", "curl")
	headers := filepath.Join(t.TempDir(), "headers")
	ctx, cancel := context.WithTimeout(context.Background(), fetchTimeout)
	defer cancel()
	// The body goes to curl's stdout, read here: hashed as the guest got it.
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", tp.Guest, "curl", "-sS", "-g", "--fail",
		"--max-time", strconv.Itoa(int(fetchTimeout/time.Second)-5), "-D", headers, "-o", "-", url)
	sum := sha256.New()
	var n countWriter
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr, cmd.WaitDelay = io.MultiWriter(sum, &n), &stderr, time.Second
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	if err != nil {
		t.Fatalf("guest: curl %s: %v after %v (%d bytes)\n%s", url, err, took, n, stderr.String())
	}
	t.Logf("guest fetched %d bytes from %s in %v (%.0f MB/s)", n, url, took.Round(time.Millisecond),
		float64(n)/took.Seconds()/1e6)

	h, err := os.ReadFile(headers)
	if err != nil {
		t.Fatal(err)
	}
	want := header(string(h), "X-Body-Sha256")
	got := hex.EncodeToString(sum.Sum(nil))
	if int(n) != blobSize || got != want {
		t.Errorf("guest got %d bytes with sha256 %s; server sent %d bytes with sha256 %q", n, got, blobSize, want)
	}
	seen := srv.seen("tcp")
	if len(seen) != 1 {
		t.Fatalf("server saw %d clients %q, want 1", len(seen), seen)
	}
	if src := hostOf(seen[0]); src != wantSrc {
		t.Errorf("server saw the request from %s, want the pod's %s", seen[0], wantSrc)
	}
	if inGuestNet(hostOf(seen[0])) {
		t.Errorf("server saw the guest's own address %s: masq leaked it", seen[0])
	}
}

// header returns the value of the last header name in a curl -D dump.
func header(dump, name string) string {
	v := ""
	for _, line := range strings.Split(dump, "\n") {
		if k, val, ok := strings.Cut(line, ":"); ok && strings.EqualFold(strings.TrimSpace(k), name) {
			v = strings.TrimSpace(val)
		}
	}
	return v
}

// inGuestNet reports whether a is in the guest's networks.
func inGuestNet(a string) bool {
	addr, err := netip.ParseAddr(a)
	if err != nil {
		return false
	}
	addr = addr.Unmap()
	return netip.MustParsePrefix(gateway4+"/24").Contains(addr) ||
		netip.MustParsePrefix(gateway6+"/120").Contains(addr)
}

type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) { *c += countWriter(len(p)); return len(p), nil }

// TestOutboundUDP: a UDP request from the guest to the outside host's echo
// server is answered, over IPv4 and IPv6. The server saw the pod's address
// and, the port being free in the pod, the guest's own source port; the
// guest sees the reply come from the address it sent to.
func TestOutboundUDP(t *testing.T) {
	tp := newTopology(t, 1500)
	srv := startPeer(t, tp.Out, "udp echo", "udpecho",
		"-listen", outAddr4+":"+echoPort+",["+outAddr6+"]:"+echoPort)
	startMasq(t, tp, "masq")
	guestStatic4(t, tp)
	guestStatic6(t, tp, false)

	for _, c := range []struct{ bind, to, pod string }{
		{guest4 + ":" + guestUDPPort, outAddr4 + ":" + echoPort, podAddr4},
		{"[" + guest6 + "]:" + guestUDPPort, "[" + outAddr6 + "]:" + echoPort, podAddr6},
	} {
		before := len(srv.seen("udp"))
		msg := "hello-from-" + hostOf(c.bind)
		code, out := runPeer(t, tp.Guest, 15*time.Second,
			"udpquery", "-bind", c.bind, "-to", c.to, "-msg", msg, "-timeout", "5s")
		if code != 0 {
			t.Errorf("guest: UDP %s → %s got no reply (exit %d):\n%s", c.bind, c.to, code, out)
			continue
		}
		t.Logf("guest: %s", strings.TrimSpace(out))
		if from := field(out, "from"); from != c.to {
			t.Errorf("guest got the reply from %s, want %s", from, c.to)
		}
		if !strings.Contains(out, msg) {
			t.Errorf("reply %q does not echo %q", out, msg)
		}
		seen := srv.seen("udp")[before:]
		if len(seen) != 1 {
			t.Errorf("server saw %d datagrams %q, want 1", len(seen), seen)
			continue
		}
		if hostOf(seen[0]) != c.pod {
			t.Errorf("server saw the datagram from %s, want the pod's %s", seen[0], c.pod)
		}
		if portOf(seen[0]) != guestUDPPort {
			t.Errorf("server saw source port %s, want the guest's %s (free in the pod)", portOf(seen[0]), guestUDPPort)
		}
	}
}

// TestManyTCP: 1000 connections from the guest to the outside host, opened
// at once and all open together, each echoing a line, all complete.
func TestManyTCP(t *testing.T) {
	const conns = 1000
	tp := newTopology(t, 1500)
	startPeer(t, tp.Out, "tcp echo", "tcpecho", "-quiet", "-listen", outAddr4+":"+echoPort)
	startMasq(t, tp, "masq")
	guestStatic4(t, tp)
	code, out := runPeer(t, tp.Guest, 90*time.Second, "tcpmany",
		"-to", outAddr4+":"+echoPort, "-n", strconv.Itoa(conns), "-timeout", "60s")
	if code != 0 || field(out, "ok") != strconv.Itoa(conns) {
		t.Fatalf("guest: %d concurrent connections to %s (exit %d):\n%s", conns, outAddr4, code, out)
	}
	t.Logf("guest: %s", strings.TrimSpace(out))
}

// TestRefusedPort: a connection from the guest to a closed port of the
// outside host is refused (the pod's RST passed on as a RST) in under a
// second, over IPv4 and IPv6, while an open port of the same host
// connects (so the refusal is the host's, not masq failing).
func TestRefusedPort(t *testing.T) {
	tp := newTopology(t, 1500)
	startPeer(t, tp.Out, "tcp echo", "tcpecho", "-listen", outAddr4+":"+echoPort+",["+outAddr6+"]:"+echoPort)
	startMasq(t, tp, "masq")
	guestStatic4(t, tp)
	guestStatic6(t, tp, false)
	for _, host := range []string{outAddr4, "[" + outAddr6 + "]"} {
		mustConnect(t, tp, host+":"+echoPort)
		to := host + ":" + closedPort
		code, out := runPeer(t, tp.Guest, 15*time.Second, "connect", "-to", to, "-timeout", "5s")
		t.Logf("guest: connect %s: %s", to, strings.Join(strings.Fields(out), " "))
		if code == 0 || field(out, "refused") != "true" {
			t.Errorf("guest: connect %s was not refused (exit %d):\n%s", to, code, out)
			continue
		}
		if d := elapsed(t, out); d >= time.Second {
			t.Errorf("guest: connect %s was refused after %v, want under 1s", to, d)
		}
	}
}

// TestUnreachableHost: a connection from the guest to an address on the
// outside network that no host has fails with "no route to host" (masq
// answers the guest's SYN with an ICMP unreachable once the pod's dial
// fails, after neighbour discovery gives up, about 3 s) instead of hanging
// for the guest's SYN retries; IPv4 and IPv6.
func TestUnreachableHost(t *testing.T) {
	tp := newTopology(t, 1500)
	startPeer(t, tp.Out, "tcp echo", "tcpecho", "-listen", outAddr4+":"+echoPort)
	startMasq(t, tp, "masq")
	guestStatic4(t, tp)
	guestStatic6(t, tp, true)
	mustConnect(t, tp, outAddr4+":"+echoPort)
	for _, nobody := range []string{"198.18.0.77:80", "[2001:db8::77]:80"} {
		code, out := runPeer(t, tp.Guest, 30*time.Second, "connect", "-to", nobody, "-timeout", "20s")
		t.Logf("guest: connect %s: %s", nobody, strings.Join(strings.Fields(out), " "))
		if code == 0 || !strings.HasPrefix(out, "error") || !strings.Contains(out, "no route to host") {
			t.Errorf("guest: connect %s did not fail with no route to host (exit %d):\n%s", nobody, code, out)
			continue
		}
		if d := elapsed(t, out); d >= 10*time.Second {
			t.Errorf("guest: connect %s failed only after %v (a timeout, not an error from masq)", nobody, d)
		}
	}
}

// mustConnect fails t unless the guest's TCP connection to an echo server
// at to echoes.
func mustConnect(t *testing.T, tp *topology, to string) {
	t.Helper()
	code, out := runPeer(t, tp.Guest, 15*time.Second, "connect", "-to", to, "-echo", "check", "-timeout", "5s")
	if code != 0 || field(out, "echo") != "check" {
		t.Fatalf("guest: connect %s (open port) did not echo (exit %d):\n%s", to, code, out)
	}
}
