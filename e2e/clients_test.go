package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// clientTimeout bounds one DHCP client run; each client is also told to give
// up well before it.
const clientTimeout = 40 * time.Second

// lease is what a client's script was given on one call: reason plus the
// lease under the keys ip, mask, router, dns, search, domain, mtu, hostname,
// lease, serverid (the same keys for both clients).
type lease map[string]string

// leaseScript is the shared body of the client scripts: it appends one
// "===" block of key=value lines to the env file and, on a new lease,
// configures the guest's tap with ip(8) the way a distribution's script
// would. It never removes an address (a renewal test needs it kept).
const leaseScript = `#!/bin/sh
# Written by masq's e2e tests; runs inside the guest namespace.
{
	echo ===
	echo "reason=$REASON"
	echo "ip=$IP"
	echo "mask=$MASK"
	echo "router=$ROUTER"
	echo "dns=$DNS"
	echo "search=$SEARCH"
	echo "domain=$DOMAIN"
	echo "mtu=$MTU"
	echo "hostname=$HOSTNAME_"
	echo "lease=$LEASE"
	echo "serverid=$SERVERID"
} >> %[1]q
case "$REASON" in
PREINIT|deconfig)
	ip link set dev "$IFACE" up
	;;
BOUND|RENEW|REBIND|REBOOT|bound|renew)
	if [ -n "$MTU" ]; then ip link set dev "$IFACE" mtu "$MTU"; fi
	ip addr replace "$IP/$MASK" dev "$IFACE"
	for r in $ROUTER; do ip route replace default via "$r" dev "$IFACE"; break; done
	;;
esac
exit 0
`

// dhclientVars and udhcpcVars map the script's names to each client's.
var (
	dhclientVars = strings.NewReplacer("$REASON", "$reason", "$IFACE", "$interface",
		"$IP", "$new_ip_address", "$MASK", "$new_subnet_mask", "$ROUTER", "$new_routers",
		"$DNS", "$new_domain_name_servers", "$SEARCH", "$new_domain_search",
		"$DOMAIN", "$new_domain_name", "$MTU", "$new_interface_mtu",
		"$HOSTNAME_", "$new_host_name", "$LEASE", "$new_dhcp_lease_time",
		"$SERVERID", "$new_dhcp_server_identifier")
	udhcpcVars = strings.NewReplacer("$REASON", "$1", "$IFACE", "$interface",
		"$IP", "$ip", "$MASK", "$subnet", "$ROUTER", "$router", "$DNS", "$dns",
		"$SEARCH", "$search", "$DOMAIN", "$domain", "$MTU", "$mtu",
		"$HOSTNAME_", "$hostname", "$LEASE", "$lease", "$SERVERID", "$serverid")
)

// dhclientConf asks for every option the contract promises, and keeps
// dhclient's retries short so a lost packet costs seconds, not a minute.
const dhclientConf = `timeout 20;
retry 1;
reboot 5;
initial-interval 1;
backoff-cutoff 2;
select-timeout 0;
request subnet-mask, routers, domain-name-servers, domain-name, domain-search, interface-mtu, host-name;
`

// dhclient is isc-dhcp-client's dhclient run in a topology's guest, with
// its config, script, lease file, pid files and env file in a temp dir.
type dhclient struct {
	tp                           *topology
	dir, conf, script, leaseFile string
	envFile                      string
	runs                         int
}

func newDHClient(t *testing.T, tp *topology) *dhclient {
	t.Helper()
	requireTool(t, "dhclient", "isc-dhcp-client")
	dir := t.TempDir()
	c := &dhclient{
		tp:        tp,
		dir:       dir,
		conf:      filepath.Join(dir, "dhclient.conf"),
		script:    filepath.Join(dir, "dhclient-script"),
		leaseFile: filepath.Join(dir, "dhclient.leases"),
		envFile:   filepath.Join(dir, "dhclient.env"),
	}
	writeFile(t, c.conf, dhclientConf, 0o644)
	writeFile(t, c.script, dhclientVars.Replace(fmt.Sprintf(leaseScript, c.envFile)), 0o755)
	return c
}

// run runs `dhclient -1` on the tap once; on success dhclient leaves a
// daemon behind, which run stops (without a release). It returns the
// client's exit code and output, and the last lease its script got.
func (c *dhclient) run(t *testing.T) (int, string, lease) {
	t.Helper()
	c.runs++
	pidFile := filepath.Join(c.dir, fmt.Sprintf("dhclient.%d.pid", c.runs))
	t.Cleanup(func() { stopDaemon(t, pidFile, "dhclient", false) })
	code, out := runClient(c.tp, "dhclient", "-1", "-v", "-cf", c.conf, "-sf", c.script,
		"-lf", c.leaseFile, "-pf", pidFile, tapName)
	if code == 0 {
		stopDaemon(t, pidFile, "dhclient", true)
	}
	return code, out, lastLease(t, c.envFile)
}

// seedLease writes a lease of addr, valid for years, to the lease file, as
// a guest that held addr elsewhere would have: dhclient starts by asking
// for it again (INIT-REBOOT).
func (c *dhclient) seedLease(t *testing.T, addr string) {
	t.Helper()
	writeFile(t, c.leaseFile, fmt.Sprintf(`lease {
  interface "%s";
  fixed-address %s;
  option subnet-mask %s;
  option routers %s;
  option dhcp-server-identifier %s;
  option dhcp-lease-time 86400;
  renew 4 2037/01/01 00:00:00;
  rebind 4 2037/01/01 00:00:00;
  expire 4 2037/01/01 00:00:00;
}
`, tapName, addr, netmask4, gateway4, gateway4), 0o644)
}

// udhcpc is busybox's udhcpc run in a topology's guest.
type udhcpc struct {
	tp              *topology
	script, envFile string
}

func newUDHCPC(t *testing.T, tp *topology) *udhcpc {
	t.Helper()
	requireTool(t, "udhcpc", "udhcpc")
	dir := t.TempDir()
	c := &udhcpc{tp: tp, script: filepath.Join(dir, "udhcpc-script"), envFile: filepath.Join(dir, "udhcpc.env")}
	writeFile(t, c.script, udhcpcVars.Replace(fmt.Sprintf(leaseScript, c.envFile)), 0o755)
	return c
}

// args are udhcpc's arguments for the tap: at most 5 DISCOVERs a second
// apart, search list and MTU requested (the rest are asked by default).
func (c *udhcpc) args(extra ...string) []string {
	return append([]string{"udhcpc", "-i", tapName, "-f", "-t", "5", "-T", "1",
		"-s", c.script, "-O", "search", "-O", "mtu"}, extra...)
}

// run gets one lease and exits; it returns udhcpc's exit code and output,
// and the last lease its script got.
func (c *udhcpc) run(t *testing.T, extra ...string) (int, string, lease) {
	t.Helper()
	code, out := runClient(c.tp, c.args(append([]string{"-n", "-q"}, extra...)...)...)
	return code, out, lastLease(t, c.envFile)
}

// udhcpcProc is a udhcpc that holds its lease in the foreground.
type udhcpcProc struct {
	c   *udhcpc
	cmd *exec.Cmd
	out *syncBuffer
}

// start runs udhcpc in the foreground until t ends and waits for its first
// lease.
func (c *udhcpc) start(t *testing.T) *udhcpcProc {
	t.Helper()
	p := &udhcpcProc{c: c, out: &syncBuffer{}}
	p.cmd = exec.Command("ip", append([]string{"netns", "exec", c.tp.Guest}, c.args("-n")...)...)
	p.cmd.Stdout, p.cmd.Stderr, p.cmd.WaitDelay = p.out, p.out, time.Second
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("udhcpc output:\n%s", p.out)
		}
	})
	if !waitFor(clientTimeout/2, func() bool { return c.lastReason(t) == "bound" }) {
		t.Fatalf("udhcpc got no lease within %v:\n%s", clientTimeout/2, p.out)
	}
	return p
}

// renewAttempts bounds how often renew asks udhcpc to renew. busybox
// udhcpc (1.35) sends its unicast REQUEST from a fresh socket bound to
// 10.0.2.2:68 and connected to 10.0.2.1:67, which it closes right after
// the write. masq ACKs within about 0.3 ms; when udhcpc has not closed that
// socket by then (preempted between write and close: seen about once in
// ten runs on a loaded two-core machine, every time under strace) the
// kernel queues the ACK on it, the more specific match, not on udhcpc's
// listening socket, and udhcpc broadcasts the REQUEST again a second
// later. The race is udhcpc's, so a renewal not answered by unicast is
// retried.
const renewAttempts = 4

// renew makes udhcpc renew (SIGUSR1: a REQUEST unicast from its address to
// the server) and fails t unless, within renewAttempts tries, such a
// REQUEST is itself ACKed: udhcpc would fall back to broadcasting it after
// a second without an answer. It returns the renewed lease.
func (p *udhcpcProc) renew(t *testing.T) lease {
	t.Helper()
	for attempt := 1; ; attempt++ {
		out := p.renewOnce(t)
		if strings.Contains(out, "sending renew to server "+gateway4) && !strings.Contains(out, "broadcasting renew") {
			return lastLease(t, p.c.envFile)
		}
		if attempt == renewAttempts {
			t.Errorf("udhcpc's unicast renewal was not answered in %d attempts; the last time it said:\n%s", attempt, out)
			return lastLease(t, p.c.envFile)
		}
		t.Logf("udhcpc's unicast renewal (attempt %d) was not answered, retrying; it said:\n%s", attempt, out)
	}
}

// renewOnce sends udhcpc SIGUSR1, waits for the renewed lease, and returns
// what udhcpc printed meanwhile.
func (p *udhcpcProc) renewOnce(t *testing.T) string {
	t.Helper()
	before, calls := len(p.out.String()), p.c.calls(t)
	if err := p.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	if !waitFor(10*time.Second, func() bool { return p.c.calls(t) > calls && p.c.lastReason(t) == "renew" }) {
		t.Fatalf("udhcpc's renewal got no ACK within 10s (last script call %q):\n%s", p.c.lastReason(t), p.out.String()[before:])
	}
	// udhcpc prints the lease before it runs the script, but its output
	// reaches p.out through a pipe, which may lag behind the script's file.
	obtained := "lease of " + guest4 + " obtained"
	waitFor(5*time.Second, func() bool { return strings.Contains(p.out.String()[before:], obtained) })
	return p.out.String()[before:]
}

// calls is how often udhcpc has run its script so far.
func (c *udhcpc) calls(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile(c.envFile)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return strings.Count(string(b), "===\n")
}

// lastReason is the reason of the script's last call, or "".
func (c *udhcpc) lastReason(t *testing.T) string {
	return lastLease(t, c.envFile)["reason"]
}

// runClient runs a DHCP client in the guest namespace, bounded by
// clientTimeout, and returns its exit code and output.
func runClient(tp *topology, args ...string) (int, string) {
	return runBounded(clientTimeout, "ip", append([]string{"netns", "exec", tp.Guest}, args...)...)
}

// stopDaemon ends the process named comm whose pid is in pidFile, if any,
// and removes the file; with wait it first gives the daemon, which writes the
// file after forking, a few seconds to do so. Called again, it does nothing.
func stopDaemon(t *testing.T, pidFile, comm string, wait bool) {
	t.Helper()
	pid := 0
	readPid := func() bool {
		b, err := os.ReadFile(pidFile)
		pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil && pid > 0
	}
	if wait {
		waitFor(5*time.Second, readPid)
	} else {
		readPid()
	}
	os.Remove(pidFile)
	if pid <= 0 {
		return
	}
	isDaemon := func() bool { // Never signal a recycled pid.
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		return err == nil && strings.TrimSpace(string(b)) == comm
	}
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		if !isDaemon() {
			return
		}
		_ = syscall.Kill(pid, sig)
		if waitFor(3*time.Second, func() bool { return !isDaemon() }) {
			return
		}
	}
	t.Errorf("%s (pid %d) did not exit", comm, pid)
}

// lastLease returns the last block the client script wrote to envFile.
func lastLease(t *testing.T, envFile string) lease {
	t.Helper()
	b, err := os.ReadFile(envFile)
	if os.IsNotExist(err) {
		return lease{}
	}
	if err != nil {
		t.Fatal(err)
	}
	blocks := strings.Split(string(b), "===\n")
	l := lease{}
	for _, line := range strings.Split(blocks[len(blocks)-1], "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			l[k] = v
		}
	}
	return l
}

// want is what the guest must be told (by any client).
type want struct {
	mtu      int
	hostname string // "" when masq is given no --hostname
}

// checkLease reports every way l differs from the guest-visible contract.
func checkLease(t *testing.T, l lease, w want) {
	t.Helper()
	t.Logf("lease: %v", l)
	eq := func(key, want string) {
		if got := l[key]; got != want {
			t.Errorf("lease %s = %q, want %q", key, got, want)
		}
	}
	eq("ip", guest4)
	eq("mask", netmask4)
	eq("router", gateway4)
	eq("dns", nameserver)
	eq("mtu", strconv.Itoa(w.mtu))
	eq("serverid", gateway4)
	if w.hostname != "" {
		eq("hostname", w.hostname)
	}
	if got := domainList(l["search"]); strings.Join(got, " ") != strings.Join(searchDomains, " ") {
		t.Errorf("lease search = %q, want %q", l["search"], searchDomains)
	}
	if n, err := strconv.Atoi(l["lease"]); err != nil || n <= 0 {
		t.Errorf("lease time = %q, want a positive number of seconds", l["lease"])
	}
}

// domainList splits a client's search list, dropping the quotes and
// trailing dots some clients print.
func domainList(s string) []string {
	var out []string
	for _, f := range strings.Fields(strings.Trim(s, `"'`)) {
		out = append(out, strings.TrimSuffix(strings.Trim(f, `"'`), "."))
	}
	return out
}

// checkGuestAddr fails t unless the guest's tap has 10.0.2.2/24.
func checkGuestAddr(t *testing.T, tp *topology) {
	t.Helper()
	if addrs := guestAddrs(t, tp); !strings.Contains(addrs, "inet "+guest4+"/24 ") {
		t.Fatalf("guest %s has no %s/24:\n%s", tapName, guest4, addrs)
	}
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}
