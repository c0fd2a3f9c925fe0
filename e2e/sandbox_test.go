package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestSandbox: masq started as root with --tap confines itself once set
// up. Every thread of it shows, in /proc, no capability in any set
// (effective, permitted, inheritable, ambient, bounding), NoNewPrivs 1
// and Seccomp 2 (a filter); and the guest still gets its lease, fetches
// 64 MiB from the outside host and serves the outside host on a
// forwarded port. The suite's environment makes a call outside the
// allowlist crash masq, so the traffic proves the allowlist too.
func TestSandbox(t *testing.T) {
	tp := newTopology(t, 1500)
	// With ping sockets masq needs no raw ICMP socket, so no CAP_NET_RAW
	// (TestOutboundPing checks that it keeps that one alone without).
	if out, err := inNetns(tp.Pod, "sysctl", "-w", "net.ipv4.ping_group_range=0 2147483647"); err != nil {
		t.Fatalf("pod: sysctl ping_group_range: %v\n%s", err, out)
	}
	srv := startPeer(t, tp.Out, "http server", "http",
		"-listen", outAddr4+":"+httpPort, "-size", strconv.Itoa(blobSize))
	m := startMasq(t, tp, "masq", "--ports", fwdPort)
	pid := m.cmd.Process.Pid // ip netns exec execs masq in its place
	checkConfined(t, pid, noCaps)
	if code, out, _ := newUDHCPC(t, tp).run(t); code != 0 {
		t.Fatalf("udhcpc exited %d:\n%s", code, out)
	}
	checkGuestAddr(t, tp)
	fetchBlob(t, tp, "http://"+outAddr4+":"+httpPort+"/blob", srv, podAddr4)
	guest := guestHTTP(t, tp, fwdPort)
	checkHTTPIn(t, tp, guest, "http://"+podAddr4+":"+fwdPort+"/", outAddr4)
	checkConfined(t, pid, noCaps) // threads started for the traffic inherit it
}

// Capability sets as /proc shows them: none, and CAP_NET_RAW alone.
const (
	noCaps     = "0000000000000000"
	netRawCaps = "0000000000002000"
)

// checkConfined fails t unless process pid is masq and each of its
// threads shows, in its /proc status, the lines of a confined thread
// holding caps (effective, permitted and bounding).
func checkConfined(t *testing.T, pid int, caps string) {
	t.Helper()
	confined := []string{
		"CapInh:\t" + noCaps,
		"CapPrm:\t" + caps,
		"CapEff:\t" + caps,
		"CapBnd:\t" + caps,
		"CapAmb:\t" + noCaps,
		"NoNewPrivs:\t1",
		"Seccomp:\t2",
	}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil || strings.TrimSpace(string(comm)) != "masq" {
		t.Fatalf("process %d is %q (%v), not masq", pid, comm, err)
	}
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	if err != nil || len(tasks) == 0 {
		t.Fatalf("masq's threads: %v (%d found)", err, len(tasks))
	}
	for _, path := range tasks {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(string(b), "\n")
		for _, want := range confined {
			if !slices.Contains(lines, want) {
				t.Errorf("%s: no line %q in\n%s", path, want, b)
			}
		}
	}
	t.Logf("masq (pid %d): %d threads, each with capabilities %s, no_new_privs and a seccomp filter", pid, len(tasks), caps)
}
