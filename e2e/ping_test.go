package e2e

import (
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestGatewayPing: after a lease the guest's kernel reaches the gateway,
// 10.0.2.1 at 02:00:00:00:00:00, and with static IPv6 fd10:0:2::1 (NDP
// answered by masq).
func TestGatewayPing(t *testing.T) {
	tp := newTopology(t, jumboMTU)
	startMasq(t, tp, "masq")
	requireTool(t, "ping", "iputils-ping")
	if code, out, _ := newUDHCPC(t, tp).run(t); code != 0 {
		t.Fatalf("udhcpc exited %d:\n%s", code, out)
	}

	ping(t, tp, gateway4, 1)
	neigh := ip(t, "-n", tp.Guest, "neigh", "show", gateway4, "dev", tapName)
	if !strings.Contains(neigh, "lladdr "+gatewayMAC) {
		t.Errorf("guest's neighbour entry for %s is %q, want lladdr %s", gateway4, neigh, gatewayMAC)
	}

	// The lease set the tap's MTU to 9000: a full-size frame must pass
	// unfragmented both ways.
	if out, err := inNetns(tp.Guest, "ping", "-c1", "-W2", "-M", "do", "-s", "8972", gateway4); err != nil {
		t.Errorf("guest: ping -M do -s 8972 %s (MTU %d): %v\n%s", gateway4, jumboMTU, err, out)
	}

	ip(t, "-n", tp.Guest, "addr", "add", guest6+"/120", "dev", tapName, "nodad")
	// replace: masq's Router Advertisement may have installed a default
	// route via the gateway's link-local address already.
	ip(t, "-n", tp.Guest, "-6", "route", "replace", "default", "via", gateway6, "dev", tapName)
	ping(t, tp, gateway6, 5) // The first may go while NDP resolves.
}

// ping runs `ping -c1 -W2 addr` in the guest up to tries times and fails t
// unless one succeeds.
func ping(t *testing.T, tp *topology, addr string, tries int) {
	t.Helper()
	var out string
	var err error
	for i := 0; i < tries; i++ {
		if out, err = inNetns(tp.Guest, "ping", "-c1", "-W2", addr); err == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("guest: ping %s failed %d times: %v\n%s", addr, tries, err, out)
}

// TestOutboundPing: the guest's pings to the outside host are really sent
// and really answered, or not answered at all. masq probes for ping
// sockets at start: with the pod's default net.ipv4.ping_group_range
// ("1 0": none) and without CAP_NET_RAW no echo reply is faked; with
// CAP_NET_RAW (root) masq pings through raw ICMP sockets; once the pod
// allows ping sockets, through those. Either way pings to 198.18.0.1 and
// 2001:db8::1 are answered by the outside host itself (its echo counters
// move); and with the outside host down, none is answered.
func TestOutboundPing(t *testing.T) {
	tp := newTopology(t, 1500)
	requireTool(t, "ping", "iputils-ping")
	precreateTap(t, tp) // Outlives the first masq, with the guest's addresses.
	guestStatic4(t, tp)
	guestStatic6(t, tp, false)

	// ping_group_range left at "1 0", and no CAP_NET_RAW to fall back on.
	first := startMasqWrapped(t, tp, "masq#1", []string{"setpriv", "--bounding-set", "-net_raw"})
	if !strings.Contains(first.log(), "are not answered") {
		t.Errorf("masq#1 did not log that it has no ping socket")
	}
	ping(t, tp, gateway4, 3) // The guest itself works: masq answers for the gateway.
	ping(t, tp, gateway6, 5)
	noPing(t, tp, "the pod allows no ping sockets", outAddr4, outAddr6)
	if code := first.stop(t); code != 0 {
		t.Errorf("masq#1 exited %d after SIGTERM, want 0", code)
	}

	// --no-raw-ping: the same, by choice, and no capability kept at all.
	noRaw := startMasq(t, tp, "masq#noraw", "--no-raw-ping")
	if !strings.Contains(noRaw.log(), "are not answered") {
		t.Errorf("masq#noraw did not log that it has no ping socket")
	}
	checkConfined(t, noRaw.cmd.Process.Pid, noCaps)
	noPing(t, tp, "masq runs with --no-raw-ping and the pod allows no ping sockets", outAddr4, outAddr6)
	if code := noRaw.stop(t); code != 0 {
		t.Errorf("masq#noraw exited %d after SIGTERM, want 0", code)
	}

	raw := startMasq(t, tp, "masq#raw") // root: CAP_NET_RAW
	if !strings.Contains(raw.log(), "raw ICMP sockets") {
		t.Errorf("masq#raw did not log that it pings through raw ICMP sockets")
	}
	pingAnsweredByOut(t, tp)
	// Confined, it kept CAP_NET_RAW alone, for the raw sockets.
	checkConfined(t, raw.cmd.Process.Pid, netRawCaps)
	// traceroute -I's probes: each TTL through the raw socket, the time
	// exceeded of the gateway, the host's reply.
	if out, err := inNetns(tp.Guest, "ping", "-c1", "-W2", "-t", "1", outAddr4); err == nil || !strings.Contains(out, "Time to live exceeded") {
		t.Errorf("guest: ping -t 1 %s through raw sockets: %v, want time exceeded\n%s", outAddr4, err, out)
	}
	if code := raw.stop(t); code != 0 {
		t.Errorf("masq#raw exited %d after SIGTERM, want 0", code)
	}

	if out, err := inNetns(tp.Pod, "sysctl", "-w", "net.ipv4.ping_group_range=0 2147483647"); err != nil {
		t.Fatalf("pod: sysctl ping_group_range: %v\n%s", err, out)
	}
	second := startMasq(t, tp, "masq#2")
	if strings.Contains(second.log(), "ping_group_range") {
		t.Errorf("masq#2 found no ping socket although the pod allows them")
	}
	pingAnsweredByOut(t, tp)

	ip(t, "-n", tp.Out, "link", "set", "eth0", "down")
	noPing(t, tp, "the outside host is down", outAddr4, outAddr6)
}

// pingAnsweredByOut pings the outside host from the guest, over IPv4 and
// IPv6, and fails t unless the outside host itself answered (its echo
// reply counters moved).
func pingAnsweredByOut(t *testing.T, tp *topology) {
	t.Helper()
	for _, c := range []struct{ addr, counter string }{
		{outAddr4, "Icmp:OutEchoReps"},
		{outAddr6, "Icmp6OutEchoReplies"},
	} {
		before := icmpCounter(t, tp.Out, c.counter)
		ping(t, tp, c.addr, 3)
		after := icmpCounter(t, tp.Out, c.counter)
		t.Logf("guest: ping %s answered; outside host's %s %d → %d", c.addr, c.counter, before, after)
		if after <= before {
			t.Errorf("the guest's ping of %s was answered, but not by the outside host (%s %d → %d)",
				c.addr, c.counter, before, after)
		}
	}
}

// startMasqWrapped is startMasq with masq run under wrap (a command and
// its arguments that then runs masq, e.g. setpriv dropping a capability).
func startMasqWrapped(t *testing.T, tp *topology, name string, wrap []string, args ...string) *proc {
	t.Helper()
	argv := append([]string{"netns", "exec", tp.Pod}, wrap...)
	argv = append(argv, masqBinary(t), "run", "--guest-netns", tp.GuestPath(), "--tap", tapName, "--log-level", "debug")
	p := startProc(t, name, "ip", append(argv, args...)...)
	p.waitReady(t, readyLine, readyTimeout)
	return p
}

// noPing fails t if `ping -c1 -W2 ADDR` from the guest gets a reply for
// any of addrs (pinged at once, to wait 2 s only once).
func noPing(t *testing.T, tp *topology, why string, addrs ...string) {
	t.Helper()
	var wg sync.WaitGroup
	for _, addr := range addrs {
		wg.Go(func() {
			out, err := inNetns(tp.Guest, "ping", "-c1", "-W2", addr)
			if err == nil || strings.Contains(out, " 1 received") {
				t.Errorf("guest: ping %s got a reply although %s:\n%s", addr, why, out)
			}
		})
	}
	wg.Wait()
}

// icmpCounter reads an ICMP counter of namespace ns: "Icmp:NAME" from
// /proc/net/snmp or an Icmp6 NAME from /proc/net/snmp6.
func icmpCounter(t *testing.T, ns, name string) int {
	t.Helper()
	file, key := "/proc/net/snmp6", name
	if k, ok := strings.CutPrefix(name, "Icmp:"); ok {
		file, key = "/proc/net/snmp", k
	}
	out, err := inNetns(ns, "cat", file)
	if err != nil {
		t.Fatalf("%s: cat %s: %v\n%s", ns, file, err, out)
	}
	lines := strings.Split(out, "\n")
	for i, line := range lines {
		f := strings.Fields(line)
		if file == "/proc/net/snmp6" {
			if len(f) == 2 && f[0] == key {
				return atoi(t, f[1])
			}
			continue
		}
		if len(f) > 0 && f[0] == "Icmp:" && i+1 < len(lines) { // names, then values
			values := strings.Fields(lines[i+1])
			for j, n := range f {
				if n == key && j < len(values) {
					return atoi(t, values[j])
				}
			}
		}
	}
	t.Fatalf("%s: no %s in %s", ns, name, file)
	return 0
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
