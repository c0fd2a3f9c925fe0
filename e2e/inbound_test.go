package e2e

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Inbound: ports of the pod forwarded to the guest. The outside host is the
// client; the servers (netpeer) run in the guest's namespace, behind masq's
// tap.
const (
	// fwdPort is the forwarded port of most inbound tests, and
	// unlistedPort one next to it that --ports leaves out.
	fwdPort      = "8080"
	unlistedPort = "8081"
	// fwdUDPPort is the forwarded UDP port, and outUDPPort the outside
	// client's source port (the guest must see it unchanged).
	fwdUDPPort = "5353"
	outUDPPort = "40002"
	// defaultPort is forwarded by default (below the ephemeral range, and
	// low enough to be within this machine's file-descriptor budget), and
	// migrationPort never is.
	defaultPort   = "2222"
	migrationPort = "49152"
	// inboundTimeout bounds one client run from the outside host.
	inboundTimeout = 15 * time.Second
	// quickly is how soon a refused or reset connection must fail.
	quickly = time.Second
)

// guestHTTP runs netpeer's HTTP server in the guest on every address at
// port; GET / answers with the client's address, and the server prints
// "seen tcp ADDR".
func guestHTTP(t *testing.T, tp *topology, port string) *proc {
	t.Helper()
	return startPeer(t, tp.Guest, "guest http server", "http", "-listen", ":"+port, "-size", "1024")
}

// curlFrom runs `curl URL` in namespace ns, bounded, and returns curl's exit
// code, its output (the body, or its error), and the time it took.
func curlFrom(t *testing.T, ns, url string) (int, string, time.Duration) {
	t.Helper()
	requireTool(t, "curl", "curl")
	start := time.Now()
	code, out := runBounded(inboundTimeout, "ip", "netns", "exec", ns,
		"curl", "-sS", "-g", "--fail", "--max-time", "10", url)
	return code, strings.TrimSpace(out), time.Since(start)
}

// checkHTTPIn fails t unless curl url from the outside host gets the guest
// server's answer and the server saw exactly one new client, from wantSrc.
func checkHTTPIn(t *testing.T, tp *topology, srv *proc, url, wantSrc string) {
	t.Helper()
	checkHTTPFrom(t, tp.Out, srv, url, wantSrc)
}

// checkHTTPFrom is checkHTTPIn with the client in namespace ns.
func checkHTTPFrom(t *testing.T, ns string, srv *proc, url, wantSrc string) {
	t.Helper()
	before := len(srv.seen("tcp"))
	code, out, took := curlFrom(t, ns, url)
	if code != 0 {
		t.Fatalf("%s: curl %s exited %d after %v:\n%s", ns, url, code, took, out)
	}
	t.Logf("%s: curl %s in %v: the guest's server answered %q", ns, url, took.Round(time.Millisecond), out)
	seen := srv.seen("tcp")[before:]
	if len(seen) != 1 {
		t.Fatalf("guest's server saw %d clients %q, want 1", len(seen), seen)
	}
	if hostOf(seen[0]) != wantSrc {
		t.Errorf("guest's server saw the client at %s, want %s (the client's real address)", seen[0], wantSrc)
	}
	if out != seen[0] {
		t.Errorf("curl got %q, but the server logged %s", out, seen[0])
	}
}

// TestInboundHTTP4: a guest that got its lease by DHCP serves HTTP on
// 8080; with --ports 8080 the outside host's curl of 198.18.0.2:8080 (the
// pod) reaches it, and the guest sees the real client, 198.18.0.1. A
// client on the pod's own loopback appears as the gateway, 10.0.2.1.
func TestInboundHTTP4(t *testing.T) {
	tp := newTopology(t, 1500)
	startMasq(t, tp, "masq", "--ports", fwdPort)
	if code, out, _ := newUDHCPC(t, tp).run(t); code != 0 {
		t.Fatalf("udhcpc exited %d:\n%s", code, out)
	}
	checkGuestAddr(t, tp)
	srv := guestHTTP(t, tp, fwdPort)
	checkHTTPIn(t, tp, srv, "http://"+podAddr4+":"+fwdPort+"/", outAddr4)
	checkHTTPFrom(t, tp.Pod, srv, "http://127.0.0.1:"+fwdPort+"/", gateway4)
}

// TestInboundHTTP6: the same over IPv6: curl of [2001:db8::2]:8080 reaches
// the guest's static fd10:0:2::2, which sees 2001:db8::1 (and the pod's
// ::1 as the gateway, fd10:0:2::1).
func TestInboundHTTP6(t *testing.T) {
	tp := newTopology(t, 1500)
	startMasq(t, tp, "masq", "--ports", fwdPort)
	guestStatic6(t, tp, false)
	srv := guestHTTP(t, tp, fwdPort)
	checkHTTPIn(t, tp, srv, "http://["+podAddr6+"]:"+fwdPort+"/", outAddr6)
	checkHTTPFrom(t, tp.Pod, srv, "http://[::1]:"+fwdPort+"/", gateway6)
}

// TestInboundUDP: with --ports 5353/udp a datagram from the outside host
// to 198.18.0.2:5353 reaches the guest's UDP echo from 198.18.0.1 and the
// client's own port, and the echo comes back from 198.18.0.2:5353.
func TestInboundUDP(t *testing.T) {
	tp := newTopology(t, 1500)
	startMasq(t, tp, "masq", "--ports", fwdUDPPort+"/udp")
	guestStatic4(t, tp)
	srv := startPeer(t, tp.Guest, "guest udp echo", "udpecho", "-listen", guest4+":"+fwdUDPPort)

	to := podAddr4 + ":" + fwdUDPPort
	bind := outAddr4 + ":" + outUDPPort
	code, out := runPeer(t, tp.Out, inboundTimeout, "udpquery", "-bind", bind, "-to", to,
		"-msg", "hello-guest", "-timeout", "5s")
	if code != 0 {
		t.Fatalf("out: UDP %s → %s got no reply (exit %d):\n%s", bind, to, code, out)
	}
	t.Logf("out: %s", strings.TrimSpace(out))
	if from := field(out, "from"); from != to {
		t.Errorf("out: the reply came from %s, want %s", from, to)
	}
	if !strings.Contains(out, "hello-guest") {
		t.Errorf("out: reply %q does not echo hello-guest", out)
	}
	seen := srv.seen("udp")
	if len(seen) != 1 || seen[0] != bind {
		t.Errorf("guest's echo saw %q, want one datagram from %s", seen, bind)
	}
}

// TestInboundUnlisted: a port that --ports leaves out is not forwarded:
// with --ports 8080 and the guest listening on 8080 and 8081, a connection
// from the outside host to 198.18.0.2:8081 is refused (by the pod's
// kernel: masq holds no socket there) within a second, while 8080 echoes.
func TestInboundUnlisted(t *testing.T) {
	tp := newTopology(t, 1500)
	startMasq(t, tp, "masq", "--ports", fwdPort)
	guestStatic4(t, tp)
	srv := startPeer(t, tp.Guest, "guest tcp echo", "tcpecho", "-listen", ":"+fwdPort+",:"+unlistedPort)

	mustConnectFrom(t, tp.Out, podAddr4+":"+fwdPort, srv, outAddr4)
	mustBeRefused(t, tp.Out, podAddr4+":"+unlistedPort)
	for _, s := range srv.seen("tcp") {
		t.Logf("guest's echo saw %s", s)
	}
	if n := len(srv.seen("tcp")); n != 1 {
		t.Errorf("guest's echo saw %d connections, want 1 (on %s only)", n, fwdPort)
	}
}

// TestInboundDefaultPorts: with no --ports every non-ephemeral port but
// 49152 and 49153 is forwarded: 2222 reaches the guest from the client's
// address, while 49152 is refused though the guest listens on it. On a
// machine whose RLIMIT_NOFILE cannot cover every port, masq forwards the
// lowest ones and logs the first it skipped (next_port): 2222/tcp is among
// them; 2222/udp is checked only when masq got that far.
func TestInboundDefaultPorts(t *testing.T) {
	tp := newTopology(t, 1500)
	m := startMasq(t, tp, "masq")
	guestStatic4(t, tp)
	tcp := startPeer(t, tp.Guest, "guest tcp echo", "tcpecho", "-listen", ":"+defaultPort+",:"+migrationPort+",:"+fwdPort)
	udp := startPeer(t, tp.Guest, "guest udp echo", "udpecho", "-listen", guest4+":"+defaultPort)

	mustConnectFrom(t, tp.Out, podAddr4+":"+defaultPort, tcp, outAddr4)
	mustBeRefused(t, tp.Out, podAddr4+":"+migrationPort)
	// TCP of every port is bound before UDP of any: 8080/tcp is forwarded
	// even where the descriptor limit stops masq short of all ports.
	mustConnectFrom(t, tp.Out, podAddr4+":"+fwdPort, tcp, outAddr4)
	if n := len(tcp.seen("tcp")); n != 2 {
		t.Errorf("guest's TCP echo saw %d connections %q, want 2 (on %s and %s only)", n, tcp.seen("tcp"), defaultPort, fwdPort)
	}

	next := ""
	for _, line := range strings.Split(m.log(), "\n") {
		if strings.Contains(line, "inbound") {
			t.Logf("masq: %s", line)
		}
		if v := field(line, "next_port"); v != "" {
			next = v
		}
	}
	if p, proto, _ := strings.Cut(next, "/"); next != "" && (proto != "udp" || atoi(t, p) <= atoi(t, defaultPort)) {
		t.Logf("masq stopped binding at %s: %s/udp is not forwarded here, not checked", next, defaultPort)
		return
	}
	to := podAddr4 + ":" + defaultPort
	code, out := runPeer(t, tp.Out, inboundTimeout, "udpquery", "-to", to, "-msg", "hello-"+defaultPort, "-timeout", "5s")
	if code != 0 {
		t.Errorf("out: UDP to %s (forwarded by default) got no reply (exit %d):\n%s", to, code, out)
	} else if seen := udp.seen("udp"); len(seen) != 1 || hostOf(seen[0]) != outAddr4 {
		t.Errorf("guest's UDP echo saw %q, want one datagram from %s", seen, outAddr4)
	}
}

// TestInboundHairpin: the guest reaches its own forwarded port through the
// pod's address (KubeVirt's kernel NAT cannot: kubevirt/kubevirt#10772).
// The connection leaves through masq's pod socket and comes back in on
// masq's listener, so the guest's server sees the pod's address.
func TestInboundHairpin(t *testing.T) {
	tp := newTopology(t, 1500)
	startMasq(t, tp, "masq", "--ports", fwdPort)
	guestStatic4(t, tp)
	srv := startPeer(t, tp.Guest, "guest tcp echo", "tcpecho", "-listen", ":"+fwdPort)

	to := podAddr4 + ":" + fwdPort
	code, out := runPeer(t, tp.Guest, inboundTimeout, "connect", "-to", to, "-echo", "hairpin", "-timeout", "5s")
	t.Logf("guest: connect %s: %s", to, strings.Join(strings.Fields(out), " "))
	if code != 0 || field(out, "echo") != "hairpin" {
		t.Fatalf("guest: connect %s (its own forwarded port) did not echo (exit %d):\n%s", to, code, out)
	}
	seen := srv.seen("tcp")
	t.Logf("guest's server saw the hairpinned client at %q", seen)
	if len(seen) != 1 || hostOf(seen[0]) != podAddr4 {
		t.Errorf("guest's server saw %q, want one connection from the pod's %s", seen, podAddr4)
	}
}

// TestInboundGuestNotListening: a forwarded port the guest does not listen
// on: the pod's kernel accepts the client's connection, the guest refuses
// masq's, and masq resets the client's at once: curl fails (connection
// reset, empty reply or refused) within a second, never hangs. The guest
// is up: another forwarded port, which it listens on, echoes.
func TestInboundGuestNotListening(t *testing.T) {
	tp := newTopology(t, 1500)
	m := startMasq(t, tp, "masq", "--ports", fwdPort+","+unlistedPort)
	guestStatic4(t, tp)
	srv := startPeer(t, tp.Guest, "guest tcp echo", "tcpecho", "-listen", ":"+unlistedPort)
	mustConnectFrom(t, tp.Out, podAddr4+":"+unlistedPort, srv, outAddr4)

	url := "http://" + podAddr4 + ":" + fwdPort + "/"
	code, out, took := curlFrom(t, tp.Out, url)
	t.Logf("out: curl %s: exit %d after %v: %s", url, code, took.Round(time.Millisecond), out)
	switch code {
	case 56, 52, 7: // recv failure (reset), empty reply, refused
	default:
		t.Errorf("out: curl %s exited %d, want 56 (reset), 52 (empty reply) or 7 (refused)", url, code)
	}
	if took >= quickly {
		t.Errorf("out: curl %s failed only after %v, want under %v", url, took, quickly)
	}
	if !waitFor(2*time.Second, func() bool {
		return strings.Contains(m.log(), "inbound connection not accepted by the guest")
	}) {
		t.Errorf("masq logged no refused inbound connection")
	}
}

// TestInboundVMManifest: --vm with KubeVirt's example manifest (port 80 on
// the masquerade interface) forwards port 80 to the guest.
func TestInboundVMManifest(t *testing.T) {
	manifest, err := filepath.Abs(filepath.Join("..", "testdata", "example-vm.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	tp := newTopology(t, 1500)
	startMasq(t, tp, "masq", "--vm", manifest)
	guestStatic4(t, tp)
	srv := guestHTTP(t, tp, "80")
	checkHTTPIn(t, tp, srv, "http://"+podAddr4+":80/", outAddr4)
	// Only the manifest's port is forwarded.
	mustBeRefused(t, tp.Out, podAddr4+":"+fwdPort)
}

// mustConnectFrom fails t unless a connection from namespace ns to the
// echo server srv at to echoes, and srv saw it from wantSrc.
func mustConnectFrom(t *testing.T, ns, to string, srv *proc, wantSrc string) {
	t.Helper()
	before := len(srv.seen("tcp"))
	msg := "to-" + portOf(to)
	code, out := runPeer(t, ns, inboundTimeout, "connect", "-to", to, "-echo", msg, "-timeout", "5s")
	t.Logf("%s: connect %s: %s", ns, to, strings.Join(strings.Fields(out), " "))
	if code != 0 || field(out, "echo") != msg {
		t.Fatalf("%s: connect %s did not echo (exit %d):\n%s", ns, to, code, out)
	}
	seen := srv.seen("tcp")[before:]
	if len(seen) != 1 || hostOf(seen[0]) != wantSrc {
		t.Errorf("guest's server saw %q, want one connection from %s", seen, wantSrc)
	}
}

// mustBeRefused fails t unless a connection from namespace ns to to is
// refused within quickly.
func mustBeRefused(t *testing.T, ns, to string) {
	t.Helper()
	code, out := runPeer(t, ns, inboundTimeout, "connect", "-to", to, "-timeout", "5s")
	t.Logf("%s: connect %s: %s", ns, to, strings.Join(strings.Fields(out), " "))
	if code == 0 || field(out, "refused") != "true" {
		t.Errorf("%s: connect %s was not refused (exit %d):\n%s", ns, to, code, out)
		return
	}
	if d := elapsed(t, out); d >= quickly {
		t.Errorf("%s: connect %s was refused after %v, want under %v", ns, to, d, quickly)
	}
}
