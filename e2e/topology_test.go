package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// cmdTimeout bounds every short command (ip, ping, a DHCP client's exit).
const cmdTimeout = 20 * time.Second

// Addresses of the topology. They match scripts/demo.sh.
const (
	outAddr4   = "198.18.0.1"
	podAddr4   = "198.18.0.2"
	outAddr6   = "2001:db8::1"
	podAddr6   = "2001:db8::2"
	nameserver = "198.18.0.53"

	gateway4 = "10.0.2.1"
	guest4   = "10.0.2.2"
	netmask4 = "255.255.255.0"
	gateway6 = "fd10:0:2::1"
	guest6   = "fd10:0:2::2"

	gatewayMAC = "02:00:00:00:00:00"
	tapName    = "tap0"
)

// searchDomains is the pod's search list, as Kubernetes writes it.
var searchDomains = []string{"default.svc.cluster.local", "svc.cluster.local", "cluster.local"}

// podResolvConf is the pod's /etc/resolv.conf (ip netns exec bind-mounts
// /etc/netns/<pod>/resolv.conf over it).
var podResolvConf = "search " + strings.Join(searchDomains, " ") + "\n" +
	"nameserver " + nameserver + "\n" +
	"options ndots:5\n"

// topology is three network namespaces: out (the world, 198.18.0.1), pod
// (where masq runs, 198.18.0.2, default routes via out) joined to out by a
// veth pair named eth0 on both sides, and an empty guest namespace for the
// tap. Everything is removed in t.Cleanup.
type topology struct {
	Out, Pod, Guest string // network namespace names
	MTU             int    // of both veth ends
}

// GuestPath is the guest namespace's path, for --guest-netns.
func (tp *topology) GuestPath() string { return netnsPath(tp.Guest) }

func netnsPath(name string) string { return "/run/netns/" + name }

// newTopology builds the namespaces with mtu on the veth pair.
func newTopology(t *testing.T, mtu int) *topology {
	t.Helper()
	requireRoot(t)
	requireTool(t, "ip", "iproute2")
	base := "masq-" + randomSuffix(t)
	tp := &topology{Out: base + "-out", Pod: base + "-pod", Guest: base + "-guest", MTU: mtu}
	newNetns(t, tp.Out)
	newNetns(t, tp.Pod)
	newNetns(t, tp.Guest)
	writeNetnsFile(t, tp.Pod, "resolv.conf", podResolvConf)

	m := strconv.Itoa(mtu)
	ip(t, "-n", tp.Out, "link", "add", "eth0", "mtu", m, "type", "veth",
		"peer", "name", "eth0", "netns", tp.Pod, "mtu", m)
	for _, c := range []struct{ ns, addr4, addr6 string }{
		{tp.Out, outAddr4, outAddr6},
		{tp.Pod, podAddr4, podAddr6},
	} {
		ip(t, "-n", c.ns, "link", "set", "eth0", "mtu", m, "up")
		ip(t, "-n", c.ns, "addr", "add", c.addr4+"/24", "dev", "eth0")
		ip(t, "-n", c.ns, "addr", "add", c.addr6+"/64", "dev", "eth0", "nodad")
	}
	ip(t, "-n", tp.Pod, "route", "add", "default", "via", outAddr4)
	ip(t, "-n", tp.Pod, "-6", "route", "add", "default", "via", outAddr6)
	return tp
}

// newNetns creates network namespace name with lo up and deletes it in
// t.Cleanup. Register processes that run inside it after this, so that
// their cleanups (which run first) end them before the namespace goes.
func newNetns(t *testing.T, name string) {
	t.Helper()
	ip(t, "netns", "add", name)
	t.Cleanup(func() {
		if out, err := command("ip", "netns", "del", name); err != nil {
			t.Errorf("ip netns del %s: %v\n%s", name, err, out)
		}
	})
	ip(t, "-n", name, "link", "set", "lo", "up")
}

// writeNetnsFile writes /etc/netns/<ns>/<file>, which ip netns exec
// bind-mounts over /etc/<file>, and removes the directory (and /etc/netns
// when this made it and it is empty again) in t.Cleanup.
func writeNetnsFile(t *testing.T, ns, file, content string) {
	t.Helper()
	const root = "/etc/netns"
	_, statErr := os.Stat(root)
	dir := filepath.Join(root, ns)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Error(err)
		}
		if errors.Is(statErr, os.ErrNotExist) {
			os.Remove(root) // Fails, harmlessly, if someone else uses it.
		}
	})
	if err := os.WriteFile(filepath.Join(dir, file), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// randomSuffix returns 6 random hex digits for unique namespace names.
func randomSuffix(t *testing.T) string {
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// command runs name with args, bounded by cmdTimeout, and returns its
// combined output.
func command(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// ip runs ip(8) with args and fails t if it fails.
func ip(t *testing.T, args ...string) string {
	t.Helper()
	out, err := command("ip", args...)
	if err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// inNetns runs args inside namespace ns, bounded by cmdTimeout.
func inNetns(ns string, args ...string) (string, error) {
	return command("ip", append([]string{"netns", "exec", ns}, args...)...)
}

// waitFor polls cond every 50ms until it holds or timeout passes, and
// reports whether it held.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer safe for a process's writes and our reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// guestAddrs returns `ip -o addr show dev tap0` in the guest.
func guestAddrs(t *testing.T, tp *topology) string {
	t.Helper()
	return ip(t, "-n", tp.Guest, "-o", "addr", "show", "dev", tapName)
}

// tapExists reports whether the guest namespace has the tap.
func tapExists(tp *topology) bool {
	_, err := command("ip", "-n", tp.Guest, "link", "show", "dev", tapName)
	return err == nil
}

// precreateTap makes the tap in the guest beforehand and brings it up, as a
// launcher that owns the tap would; such a tap outlives masq.
func precreateTap(t *testing.T, tp *topology) {
	t.Helper()
	ip(t, "-n", tp.Guest, "tuntap", "add", "dev", tapName, "mode", "tap")
	ip(t, "-n", tp.Guest, "link", "set", tapName, "up")
}

// guestStatic4 configures the guest's tap the way a lease would, without
// DHCP: up with the topology's MTU, 10.0.2.2/24, default route via
// 10.0.2.1.
func guestStatic4(t *testing.T, tp *topology) {
	t.Helper()
	ip(t, "-n", tp.Guest, "link", "set", tapName, "mtu", strconv.Itoa(tp.MTU), "up")
	ip(t, "-n", tp.Guest, "addr", "replace", guest4+"/24", "dev", tapName)
	ip(t, "-n", tp.Guest, "route", "replace", "default", "via", gateway4, "dev", tapName)
}

// dadTimeout bounds the guest's duplicate address detection of
// fd10:0:2::2 (one probe a second by default).
const dadTimeout = 3 * time.Second

// guestStatic6 gives the guest's tap its static fd10:0:2::2/120 and a
// default route via fd10:0:2::1, as cloud-init would. With dad the address
// goes through duplicate address detection, which masq must not answer, and
// guestStatic6 waits until it is no longer tentative; without, it is added
// with nodad.
func guestStatic6(t *testing.T, tp *topology, dad bool) {
	t.Helper()
	ip(t, "-n", tp.Guest, "link", "set", tapName, "mtu", strconv.Itoa(tp.MTU), "up")
	args := []string{"-n", tp.Guest, "addr", "add", guest6 + "/120", "dev", tapName}
	if !dad {
		args = append(args, "nodad")
	}
	ip(t, args...)
	if dad {
		var addrs string
		start := time.Now()
		settled := waitFor(dadTimeout, func() bool {
			addrs = ip(t, "-n", tp.Guest, "-6", "-o", "addr", "show", "dev", tapName)
			return !strings.Contains(addrs, "tentative") || strings.Contains(addrs, "dadfailed")
		})
		if !settled || strings.Contains(addrs, "dadfailed") || !strings.Contains(addrs, guest6+"/120") {
			t.Fatalf("guest's %s did not pass DAD within %v:\n%s", guest6, dadTimeout, addrs)
		}
		t.Logf("guest's %s passed DAD in %v", guest6, time.Since(start).Round(10*time.Millisecond))
	}
	ip(t, "-n", tp.Guest, "-6", "route", "replace", "default", "via", gateway6, "dev", tapName)
}

// setPodResolvConf replaces the pod's resolv.conf (before masq starts).
func setPodResolvConf(t *testing.T, tp *topology, content string) {
	t.Helper()
	writeFile(t, filepath.Join("/etc/netns", tp.Pod, "resolv.conf"), content, 0o644)
}
