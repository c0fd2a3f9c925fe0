package e2e

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

// closedUDPPort is a port nothing listens on at the outside host.
const closedUDPPort = "9"

// TestUDPRefused: a guest UDP client connected to a closed port of the
// outside host gets ECONNREFUSED at once, over IPv4 and IPv6: the outside
// host's port unreachable, drawn by the pod's socket, reaches the guest.
func TestUDPRefused(t *testing.T) {
	tp := newTopology(t, 1500)
	startMasq(t, tp, "masq")
	guestStatic4(t, tp)
	guestStatic6(t, tp, false)
	for _, to := range []string{outAddr4 + ":" + closedUDPPort, "[" + outAddr6 + "]:" + closedUDPPort} {
		code, out := runPeer(t, tp.Guest, 15*time.Second, "udpconnect", "-to", to, "-msg", "anyone?", "-timeout", "5s")
		t.Logf("guest → %s: %s", to, strings.TrimSpace(out))
		if code != 0 || !strings.Contains(out, "refused") {
			t.Errorf("guest UDP to closed %s: exit %d, %q; want refused", to, code, out)
		}
	}
}

// Addresses of the routed topology: the pod reaches the outside host
// through a router namespace.
const (
	routerOut4 = "198.18.0.254" // the router on the outside host's link
	routerOut6 = "2001:db8::fe"
	routerPod4 = "198.18.1.1" // the router on the pod's link
	routerPod6 = "2001:db8:1::1"
	podLink4   = "198.18.1.2"
	podLink6   = "2001:db8:1::2"
)

// newRoutedTopology is newTopology with a router between the pod and the
// outside host: out (198.18.0.1) <-> router (198.18.0.254, 198.18.1.1)
// <-> pod (198.18.1.2), and the same in 2001:db8::/64, 2001:db8:1::/64.
func newRoutedTopology(t *testing.T) *topology {
	t.Helper()
	requireRoot(t)
	requireTool(t, "ip", "iproute2")
	base := "masq-" + randomSuffix(t)
	tp := &topology{Out: base + "-out", Pod: base + "-pod", Guest: base + "-guest", MTU: 1500}
	router := base + "-rt"
	for _, ns := range []string{tp.Out, router, tp.Pod, tp.Guest} {
		newNetns(t, ns)
	}
	writeNetnsFile(t, tp.Pod, "resolv.conf", podResolvConf)
	ip(t, "-n", router, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", tp.Out)
	ip(t, "-n", router, "link", "add", "eth1", "type", "veth", "peer", "name", "eth0", "netns", tp.Pod)
	for _, c := range []struct{ ns, dev, addr4, addr6 string }{
		{tp.Out, "eth0", outAddr4 + "/24", outAddr6 + "/64"},
		{router, "eth0", routerOut4 + "/24", routerOut6 + "/64"},
		{router, "eth1", routerPod4 + "/24", routerPod6 + "/64"},
		{tp.Pod, "eth0", podLink4 + "/24", podLink6 + "/64"},
	} {
		ip(t, "-n", c.ns, "link", "set", c.dev, "up")
		ip(t, "-n", c.ns, "addr", "add", c.addr4, "dev", c.dev)
		ip(t, "-n", c.ns, "addr", "add", c.addr6, "dev", c.dev, "nodad")
	}
	// The router answers every probe: Linux rate-limits its ICMP errors
	// per destination (icmp_ratelimit: 1 a second after a burst of 6),
	// which back-to-back traceroutes exceed (one in three then missed
	// the router's hop); a kernel NAT in masq's place would see the same.
	for _, k := range []string{"net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1",
		"net.ipv4.icmp_ratelimit=0", "net.ipv6.icmp.ratelimit=0"} {
		if out, err := inNetns(router, "sysctl", "-qw", k); err != nil {
			t.Fatalf("sysctl %s: %v\n%s", k, err, out)
		}
	}
	ip(t, "-n", tp.Pod, "route", "add", "default", "via", routerPod4)
	ip(t, "-n", tp.Pod, "-6", "route", "add", "default", "via", routerPod6)
	ip(t, "-n", tp.Out, "route", "add", "198.18.1.0/24", "via", routerOut4)
	ip(t, "-n", tp.Out, "-6", "route", "add", "2001:db8:1::/64", "via", routerOut6)
	// The link-local addresses go through duplicate address detection;
	// until it ends, neighbor discovery between the namespaces fails and
	// the first IPv6 replies are lost.
	for _, ns := range []string{tp.Out, router, tp.Pod} {
		if !waitFor(5*time.Second, func() bool { return ip(t, "-n", ns, "-6", "addr", "show", "tentative") == "" }) {
			t.Fatalf("%s: IPv6 addresses still tentative", ns)
		}
	}
	return tp
}

// hopRE matches a hop line of traceroute -n: its number and address.
var hopRE = regexp.MustCompile(`(?m)^\s*(\d+)\s+(\S+)`)

// TestTraceroute: traceroute from the guest through masq and a router
// shows every hop: masq's gateway (the guest's TTL 1 expires there), the
// router (the pod sends with the guest's TTL less one, and the router's
// time exceeded is relayed from its address), and the host (its port
// unreachable, or echo reply, relayed). With UDP probes, ICMP echo (-I)
// and TCP SYNs (-T: a probe's SYN is dialled with the guest's TTL less
// one, and the router's time exceeded that ends the dial is relayed), in
// IPv4 and IPv6.
func TestTraceroute(t *testing.T) {
	requireTool(t, "traceroute", "traceroute")
	tp := newRoutedTopology(t)
	if out, err := inNetns(tp.Pod, "sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647"); err != nil {
		t.Fatalf("ping_group_range: %v\n%s", err, out)
	}
	startMasq(t, tp, "masq")
	guestStatic4(t, tp)
	guestStatic6(t, tp, false)
	startPeer(t, tp.Out, "tcp echo", "tcpecho", "-listen", outAddr4+":"+echoPort+",["+outAddr6+"]:"+echoPort)
	for _, c := range []struct {
		args []string
		hops []string
	}{
		{[]string{"-4", outAddr4}, []string{gateway4, routerPod4, outAddr4}},
		{[]string{"-6", outAddr6}, []string{gateway6, routerPod6, outAddr6}},
		{[]string{"-4", "-I", outAddr4}, []string{gateway4, routerPod4, outAddr4}},
		{[]string{"-6", "-I", outAddr6}, []string{gateway6, routerPod6, outAddr6}},
		{[]string{"-4", "-T", "-p", echoPort, outAddr4}, []string{gateway4, routerPod4, outAddr4}},
		{[]string{"-6", "-T", "-p", echoPort, outAddr6}, []string{gateway6, routerPod6, outAddr6}},
	} {
		args := append([]string{"traceroute", "-n", "-q", "1", "-w", "2", "-m", "5"}, c.args...)
		out, err := inNetns(tp.Guest, args...)
		t.Logf("guest: %s:\n%s", strings.Join(args, " "), out)
		var got []string
		for _, m := range hopRE.FindAllStringSubmatch(out, -1) {
			got = append(got, m[2])
		}
		if err != nil || strings.Join(got, " ") != strings.Join(c.hops, " ") {
			t.Errorf("%s: %v, hops %v; want %v", strings.Join(args, " "), err, got, c.hops)
		}
	}
}

// mtuRE matches the path MTU ping reports, from a relayed "fragmentation
// needed" / "packet too big" or, once the guest's kernel learned it, its
// own local error: "(mtu = 1300)", "mtu=1300", "mtu: 1300".
var mtuRE = regexp.MustCompile(`mtu ?[=:] ?(\d+)`)

// TestPathMTUThroughRouter: with a router whose link to the outside host
// has a smaller MTU (1300) than the guest's (1500), `ping -M do -s 1400`
// from the guest reports the smaller path MTU, over IPv4 (the router's
// "fragmentation needed" for the DF datagram, relayed) and IPv6 ("packet
// too big", relayed), as through a kernel NAT.
func TestPathMTUThroughRouter(t *testing.T) {
	requireTool(t, "ping", "iputils-ping")
	tp := newRoutedTopology(t)
	if out, err := inNetns(tp.Pod, "sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647"); err != nil {
		t.Fatalf("ping_group_range: %v\n%s", err, out)
	}
	router := strings.TrimSuffix(tp.Out, "-out") + "-rt"
	ip(t, "-n", router, "link", "set", "eth0", "mtu", "1300")
	ip(t, "-n", tp.Out, "link", "set", "eth0", "mtu", "1300")
	startMasq(t, tp, "masq")
	guestStatic4(t, tp)
	guestStatic6(t, tp, false)
	for _, c := range []struct{ family, dst, router string }{
		{"-4", outAddr4, routerPod4},
		{"-6", outAddr6, routerPod6},
	} {
		out, _ := inNetns(tp.Guest, "ping", c.family, "-n", "-c", "3", "-i", "0.3", "-W", "2", "-M", "do", "-s", "1400", c.dst)
		t.Logf("guest: ping %s -M do -s 1400 %s:\n%s", c.family, c.dst, out)
		m := mtuRE.FindStringSubmatch(out)
		if m == nil || m[1] != "1300" {
			t.Errorf("ping %s -M do -s 1400 %s: no path MTU 1300 reported", c.family, c.dst)
		}
		if !strings.Contains(out, "From "+c.router) {
			t.Errorf("ping %s: no error from the router %s", c.family, c.router)
		}
		// A datagram that fits still goes through.
		if out, err := inNetns(tp.Guest, "ping", c.family, "-n", "-c", "1", "-W", "2", "-M", "do", "-s", "1200", c.dst); err != nil {
			t.Errorf("ping %s -s 1200 %s: %v\n%s", c.family, c.dst, err, out)
		}
	}
}
