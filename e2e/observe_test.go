package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// metricsAddr is where masq serves Prometheus in the pod namespace (a
// namespace of the test's own: no other process holds it).
const metricsAddr = "127.0.0.1:9464"

// inboundPort is a port of the guest's that masq forwards (every port is,
// by default).
const inboundPort = "2222"

// TestStatusAndFlows: masq with --control and --metrics serves a guest
// that got its lease by DHCP and holds a TCP connection and a UDP flow
// to the outside host; `masq status` and `masq flows` show them, with
// the bytes each way, and Prometheus's /metrics counts them.
func TestStatusAndFlows(t *testing.T) {
	requireTool(t, "bash", "bash")
	requireTool(t, "curl", "curl")
	tp := newTopology(t, 1500)
	startPeer(t, tp.Out, "tcp echo", "tcpecho", "-listen", outAddr4+":"+echoPort)
	startPeer(t, tp.Out, "udp echo", "udpecho", "-listen", outAddr4+":"+echoPort)
	sock := filepath.Join(t.TempDir(), "control.sock")
	startMasq(t, tp, "masq", "--control", sock, "--metrics", metricsAddr)
	if code, out, _ := newUDHCPC(t, tp).run(t); code != 0 {
		t.Fatalf("udhcpc exited %d:\n%s", code, out)
	}
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("control socket: mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	// The guest's TCP connection, held open: "hello" sent and echoed.
	held := startProc(t, "guest tcp", "ip", "netns", "exec", tp.Guest, "bash", "-c",
		"exec 3<>/dev/tcp/"+outAddr4+"/"+echoPort+"; printf hello >&3; head -c 5 <&3; echo; sleep 60")
	held.waitReady(t, "hello", cmdTimeout)
	if code, out := runPeer(t, tp.Guest, cmdTimeout, "udpquery", "-to", outAddr4+":"+echoPort, "-msg", "ping"); code != 0 {
		t.Fatalf("udpquery exited %d:\n%s", code, out)
	}
	// An inbound connection from the outside host to the guest's
	// forwarded port, held open.
	startPeer(t, tp.Guest, "guest echo", "tcpecho", "-listen", guest4+":"+inboundPort)
	client := startProc(t, "outside client", "ip", "netns", "exec", tp.Out, "bash", "-c",
		"exec 3<>/dev/tcp/"+podAddr4+"/"+inboundPort+"; printf hi >&3; head -c 2 <&3; echo; sleep 60")
	client.waitReady(t, "hi", cmdTimeout)

	status := masqCommand(t, "status", "--control", sock)
	t.Logf("masq status:\n%s", status)
	for _, want := range []string{"link", "tap " + tapName, "mtu 1500", guest4, "expires in", "tcp_connections", "ready"} {
		if !strings.Contains(status, want) {
			t.Errorf("masq status lacks %q", want)
		}
	}
	flows := masqCommand(t, "flows", "--control", sock)
	t.Logf("masq flows:\n%s", flows)
	if !hasLine(flows, "tcp", "outbound", "established", guest4+":", outAddr4+":"+echoPort, podAddr4+":", "5B/") ||
		!hasLine(flows, "udp", "outbound", "replied", guest4+":", outAddr4+":"+echoPort) ||
		!hasLine(flows, "tcp", "inbound", "established", guest4+":"+inboundPort, outAddr4+":", podAddr4+":"+inboundPort, "2B/") {
		t.Errorf("masq flows lacks the guest's TCP connection, its UDP flow or the inbound connection")
	}
	out := masqCommand(t, "flows", "--control", sock, "--json", "--proto", "tcp", "--port", echoPort)
	raw := []map[string]any{}
	if err := json.Unmarshal([]byte(out), &raw); err != nil || len(raw) != 1 {
		t.Fatalf("masq flows --json --proto tcp: %v, %d flows:\n%s", err, len(raw), out)
	}
	if raw[0]["bytes_from_guest"] != 5.0 || raw[0]["bytes_to_guest"] != 5.0 || raw[0]["remote"] != outAddr4+":"+echoPort {
		t.Errorf("tcp flow %v: want 5 bytes each way to %s:%s", raw[0], outAddr4, echoPort)
	}

	code, metrics := runBounded(cmdTimeout, "ip", "netns", "exec", tp.Pod, "curl", "-sS", "--fail", "http://"+metricsAddr+"/metrics")
	if code != 0 {
		t.Fatalf("curl /metrics exited %d: %s", code, metrics)
	}
	t.Logf("/metrics, masq_*:\n%s", grepLines(metrics, "masq_"))
	for _, want := range []string{
		`masq_flows_open{direction="outbound",proto="tcp"} 1`,
		`masq_flow_bytes_from_guest_total{direction="outbound",proto="tcp"} 5`,
		`masq_flow_bytes_to_guest_total{direction="outbound",proto="udp"} `,
		`masq_dhcp_messages_sent_total{type="ack"} 1`,
		`masq_dial_duration_seconds_count{direction="outbound",result="connected"} 1`,
		"process_resident_memory_bytes",
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if code, out := runBounded(cmdTimeout, "ip", "netns", "exec", tp.Pod, "curl", "-sS", "--fail", "http://"+metricsAddr+"/readyz"); code != 0 {
		t.Errorf("/readyz: %d %s", code, out)
	}
}

// masqCommand runs `masq args...` (a client of the control socket, from
// the test's own namespace) and returns its output.
func masqCommand(t *testing.T, args ...string) string {
	t.Helper()
	code, out := runBounded(cmdTimeout, masqBinary(t), args...)
	if code != 0 {
		t.Fatalf("masq %s exited %d:\n%s", strings.Join(args, " "), code, out)
	}
	return out
}

// hasLine reports whether one line of out holds every field.
func hasLine(out string, fields ...string) bool {
	for _, line := range strings.Split(out, "\n") {
		all := true
		for _, f := range fields {
			all = all && strings.Contains(line, f)
		}
		if all {
			return true
		}
	}
	return false
}

// grepLines returns the lines of out that hold s.
func grepLines(out, s string) string {
	var b strings.Builder
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, s) {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}
