package e2e

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// gatewayLinkLocal is the gateway's link-local address: gVisor's modified
// EUI-64 of gatewayMAC, the source of masq's Router Advertisements.
const gatewayLinkLocal = "fe80::ff:fe00:0"

// raTimeout bounds the wait for the guest's default route from a Router
// Advertisement: the kernel solicits at once when the link comes up, and
// masq answers within minDelayBetweenRAs (3 s) of its last one.
const raTimeout = 10 * time.Second

// dhclient6Script records the DHCPv6 lease and configures the address as
// a distribution's dhclient-script does (without touching resolv.conf).
const dhclient6Script = `#!/bin/sh
{
	echo ===
	echo "reason=$reason"
	echo "ip=$new_ip6_address"
	echo "prefixlen=$new_ip6_prefixlen"
	echo "dns=$new_dhcp6_name_servers"
	echo "search=$new_dhcp6_domain_search"
	echo "serverid=$new_dhcp6_server_id"
} >> %[1]q
case "$reason" in
BOUND6|RENEW6|REBIND6|REBOOT6)
	ip -6 addr replace "$new_ip6_address/$new_ip6_prefixlen" dev "$interface" valid_lft "$new_max_life" preferred_lft "$new_preferred_life"
	;;
esac
exit 0
`

const dhclient6Conf = `timeout 20;
retry 1;
initial-interval 1;
backoff-cutoff 2;
request dhcp6.name-servers, dhcp6.domain-search;
`

// guestLinkUp brings the guest's tap up with the topology's MTU and waits
// until its link-local address has passed DAD (a DHCPv6 client needs it).
func guestLinkUp(t *testing.T, tp *topology) {
	t.Helper()
	ip(t, "-n", tp.Guest, "link", "set", tapName, "mtu", strconv.Itoa(tp.MTU), "up")
	var addrs string
	if !waitFor(dadTimeout, func() bool {
		addrs = ip(t, "-n", tp.Guest, "-6", "-o", "addr", "show", "dev", tapName, "scope", "link")
		return strings.Contains(addrs, "fe80::") && !strings.Contains(addrs, "tentative")
	}) {
		t.Fatalf("guest's link-local address not ready:\n%s", addrs)
	}
}

// waitRADefaultRoute waits for the guest's IPv6 default route via the
// gateway's link-local address, learnt from a Router Advertisement.
func waitRADefaultRoute(t *testing.T, tp *topology) string {
	t.Helper()
	var route string
	start := time.Now()
	if !waitFor(raTimeout, func() bool {
		route = ip(t, "-n", tp.Guest, "-6", "route", "show", "default")
		return strings.Contains(route, "via "+gatewayLinkLocal)
	}) {
		t.Fatalf("no default route via %s within %v: %q\n%s", gatewayLinkLocal, raTimeout, route,
			ip(t, "-n", tp.Guest, "-6", "route"))
	}
	t.Logf("default route from RA after %v: %s", time.Since(start).Round(10*time.Millisecond), strings.TrimSpace(route))
	return route
}

// TestIPv6AutoDHClient: a guest with no static IPv6 gets its default route
// from masq's Router Advertisement and fd10:0:2::2 from DHCPv6 with
// `dhclient -6`, then fetches from the outside host over IPv6.
func TestIPv6AutoDHClient(t *testing.T) {
	requireTool(t, "dhclient", "isc-dhcp-client")
	tp := newTopology(t, 1500)
	srv := startPeer(t, tp.Out, "http server", "http",
		"-listen", "["+outAddr6+"]:"+httpPort, "-size", strconv.Itoa(blobSize))
	setPodResolvConf(t, tp, podResolvConf+"nameserver "+nameserver6+"\n")
	m := startMasq(t, tp, "masq")
	guestLinkUp(t, tp)
	waitRADefaultRoute(t, tp)
	if mtu := readGuestSysctl(t, tp, "net/ipv6/conf/"+tapName+"/mtu"); mtu != strconv.Itoa(tp.MTU) {
		t.Errorf("guest IPv6 MTU %s, want %d", mtu, tp.MTU)
	}

	dir := t.TempDir()
	conf, script := filepath.Join(dir, "dhclient6.conf"), filepath.Join(dir, "dhclient6-script")
	envFile, pidFile := filepath.Join(dir, "env"), filepath.Join(dir, "dhclient6.pid")
	writeFile(t, conf, dhclient6Conf, 0o644)
	writeFile(t, script, fmt.Sprintf(dhclient6Script, envFile), 0o755)
	t.Cleanup(func() { stopDaemon(t, pidFile, "dhclient", false) })
	code, out := runClient(tp, "dhclient", "-6", "-1", "-v", "-cf", conf, "-sf", script,
		"-lf", filepath.Join(dir, "leases"), "-pf", pidFile, tapName)
	if code != 0 {
		t.Fatalf("dhclient -6 exited %d:\n%s\nmasq:\n%s", code, out, m.log())
	}
	stopDaemon(t, pidFile, "dhclient", true)
	l := lastLease(t, envFile)
	t.Logf("DHCPv6 lease: %v", l)
	if l["ip"] != guest6 || l["dns"] != nameserver6 ||
		!strings.Contains(l["search"], searchDomains[0]) {
		t.Errorf("lease %v: want ip %s, dns %s, search %s", l, guest6, nameserver6, searchDomains[0])
	}
	if !waitFor(dadTimeout, func() bool {
		a := ip(t, "-n", tp.Guest, "-6", "-o", "addr", "show", "dev", tapName)
		return strings.Contains(a, guest6+"/") && !strings.Contains(a, "tentative")
	}) {
		t.Fatalf("guest lacks %s:\n%s", guest6, guestAddrs(t, tp))
	}
	fetchBlob(t, tp, "http://["+outAddr6+"]:"+httpPort+"/blob", srv, podAddr6)
	if !strings.Contains(m.log(), "dhcpv6: reply") {
		t.Errorf("masq logged no DHCPv6 reply")
	}
}

// nameserver6 is an IPv6 nameserver added to the pod's resolv.conf: DHCPv6
// offers it as it is.
const nameserver6 = "2001:db8::53"

// readGuestSysctl reads /proc/sys/<name> inside the guest namespace.
func readGuestSysctl(t *testing.T, tp *topology, name string) string {
	t.Helper()
	out, err := inNetns(tp.Guest, "cat", filepath.Join("/proc/sys", name))
	if err != nil {
		t.Fatalf("read %s: %v", name, err)
	}
	return strings.TrimSpace(out)
}

// TestIPv6NoRA: with --no-ra the guest hears no Router Advertisement, so
// it learns no default route, though it solicits one when its link comes
// up (the kernel sends up to three, 4 s apart; the first is the one masq
// would answer).
func TestIPv6NoRA(t *testing.T) {
	tp := newTopology(t, 1500)
	m := startMasq(t, tp, "masq", "--no-ra")
	guestLinkUp(t, tp)
	time.Sleep(minRAWait)
	if route := ip(t, "-n", tp.Guest, "-6", "route", "show", "default"); route != "" {
		t.Errorf("default route with --no-ra: %s", route)
	}
	if !strings.Contains(m.log(), `ra=false`) {
		t.Errorf("masq did not log ra=false")
	}
}

// minRAWait is how long TestIPv6NoRA listens for an advertisement: longer
// than masq takes to answer the guest's first solicitation.
const minRAWait = 4 * time.Second

// TestIPv6AutoDhcpcd: dhcpcd, which does its own Router Advertisement
// processing, starts DHCPv6 because masq's RA has Managed=1, takes
// fd10:0:2::2 and the default route via the gateway's link-local address,
// and the guest fetches over IPv6. Its hooks are off (--script /bin/true),
// so it never touches the host's resolv.conf.
func TestIPv6AutoDhcpcd(t *testing.T) { ipv6AutoDhcpcd(t, 1500) }

// TestIPv6AutoDhcpcdJumbo: the same on a pod of MTU 9000: the RA's MTU
// option carries it, and dhcpcd's default route has it.
func TestIPv6AutoDhcpcdJumbo(t *testing.T) { ipv6AutoDhcpcd(t, jumboMTU) }

func ipv6AutoDhcpcd(t *testing.T, mtu int) {
	requireTool(t, "dhcpcd", "dhcpcd-base")
	tp := newTopology(t, mtu)
	srv := startPeer(t, tp.Out, "http server", "http",
		"-listen", "["+outAddr6+"]:"+httpPort, "-size", strconv.Itoa(blobSize))
	m := startMasq(t, tp, "masq")
	ip(t, "-n", tp.Guest, "link", "set", tapName, "mtu", strconv.Itoa(tp.MTU), "up")
	dir := t.TempDir()
	conf := filepath.Join(dir, "dhcpcd.conf")
	writeFile(t, conf, "ipv6only\nnoipv4ll\nduid\n", 0o644)
	t.Cleanup(func() { runClient(tp, "dhcpcd", "-x", "-f", conf, tapName) })
	code, out := runClient(tp, "dhcpcd", "-6", "-w", "-t", "30", "--script", "/bin/true", "-f", conf, tapName)
	if code != 0 {
		t.Fatalf("dhcpcd exited %d:\n%s\nmasq:\n%s", code, out, m.log())
	}
	var addrs string
	if !waitFor(raTimeout, func() bool {
		addrs = ip(t, "-n", tp.Guest, "-6", "-o", "addr", "show", "dev", tapName)
		return strings.Contains(addrs, guest6+"/") && !strings.Contains(addrs, "tentative")
	}) {
		t.Fatalf("guest lacks %s:\n%s\ndhcpcd:\n%s", guest6, addrs, out)
	}
	route := waitRADefaultRoute(t, tp)
	if want := "mtu " + strconv.Itoa(mtu); !strings.Contains(route, want) {
		t.Errorf("default route %q: want the RA's %s", strings.TrimSpace(route), want)
	}
	fetchBlob(t, tp, "http://["+outAddr6+"]:"+httpPort+"/blob", srv, podAddr6)
}
