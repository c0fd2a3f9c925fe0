package e2e

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestBadFlags: a bad flag exits 2, before anything starts, with a message
// naming the flag. masq runs inside a namespace of the test's own, with
// that namespace as the guest's, so a flag that is wrongly accepted cannot
// put a tap anywhere else.
func TestBadFlags(t *testing.T) {
	bin := masqBinary(t)
	ns := "masq-" + randomSuffix(t) + "-flags"
	newNetns(t, ns)
	for _, tc := range []struct {
		args []string
		flag string // what the message must name
	}{
		{[]string{"--mtu", "70000"}, "--mtu"},
		{[]string{"--mtu", "jumbo"}, "--mtu"},
		{[]string{"--vm-cidr", "10.0.2.0/31"}, "--vm-cidr"},
		{[]string{"--vm-cidr", "10.0.2.300/24"}, "--vm-cidr"},
		{[]string{"--vm-ipv6-cidr", "10.0.2.0/24"}, "--vm-ipv6-cidr"},
		{[]string{"--guest-mac", "not-a-mac"}, "--guest-mac"},
		{[]string{"--log-level", "chatty"}, "--log-level"},
		{[]string{"--guest-netns", "/nonexistent"}, "--guest-netns"},
		{[]string{"--no-such-flag"}, "no-such-flag"},
	} {
		t.Run(strings.Join(tc.args, "="), func(t *testing.T) {
			args := append([]string{"netns", "exec", ns, bin, "run", "--tap", tapName, "--guest-netns", netnsPath(ns)}, tc.args...)
			code, out := runBounded(5*time.Second, "ip", args...)
			if code != 2 {
				t.Errorf("masq run %s exited %d, want 2:\n%s", strings.Join(tc.args, " "), code, out)
			}
			if !strings.Contains(out, tc.flag) {
				t.Errorf("masq run %s: message does not name %s:\n%s", strings.Join(tc.args, " "), tc.flag, out)
			}
			if links := ip(t, "-n", ns, "-o", "link", "show"); strings.Contains(links, tapName) {
				t.Errorf("masq run %s made a tap:\n%s", strings.Join(tc.args, " "), links)
			}
		})
	}
}

// TestNoLinkFlag: masq names the five guest links when given none.
func TestNoLinkFlag(t *testing.T) {
	code, out := runBounded(5*time.Second, masqBinary(t), "run")
	if code != 2 || !strings.Contains(out, "--tap NAME, --tap-fd N, --attach NAME, --socket PATH|tcp:IP:PORT or --vhost-user PATH") {
		t.Errorf("masq run with no link exited %d:\n%s\nwant 2 and the five links named", code, out)
	}
}

// TestVersion: `masq version` prints something and exits 0.
func TestVersion(t *testing.T) {
	code, out := runBounded(5*time.Second, masqBinary(t), "version")
	if code != 0 || strings.TrimSpace(out) == "" {
		t.Errorf("masq version exited %d with %q, want 0 and a version", code, out)
	}
	t.Logf("masq version: %s", strings.TrimSpace(out))
}

// runBounded runs a command for at most timeout (then kills it) and returns
// its exit code (-1 when killed) and combined output.
func runBounded(timeout time.Duration, name string, args ...string) (int, string) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = 2 * time.Second // A daemon child may hold the pipes briefly.
	out, _ := cmd.CombinedOutput()
	if cmd.ProcessState == nil {
		return -1, string(out)
	}
	return cmd.ProcessState.ExitCode(), string(out)
}
