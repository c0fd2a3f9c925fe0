package e2e

import (
	"strconv"
	"strings"
	"testing"
)

// --attach: masq serves the guest through an existing interface whose other
// end is the guest, with an AF_PACKET socket. Here the interface is one end
// of a veth pair whose other end, named tap0 so that the guest helpers
// apply, is the guest's NIC in the guest namespace (a VM's would be QEMU's
// tap).

// attachName is masq's end of the veth pair.
const attachName = "att0"

// attachVeth gives the guest a veth pair instead of a tap: tap0 in the
// guest namespace, up, and att0 in namespace ns (the guest's own, as a
// hypervisor's namespace would hold it, or the pod's, as KubeVirt's tap
// is), left down for masq to bring up. The pair goes with the namespaces.
func attachVeth(t *testing.T, tp *topology, ns string) {
	t.Helper()
	m := strconv.Itoa(tp.MTU)
	ip(t, "-n", tp.Guest, "link", "add", tapName, "mtu", m, "type", "veth",
		"peer", "name", attachName, "netns", ns, "mtu", m)
	ip(t, "-n", tp.Guest, "link", "set", tapName, "up")
}

// startAttached runs `masq run --attach att0` in the pod, with
// --guest-netns when att0 is in the guest namespace, and waits until it is
// ready.
func startAttached(t *testing.T, tp *topology, inGuestNetns bool, args ...string) *proc {
	t.Helper()
	argv := []string{"netns", "exec", tp.Pod, masqBinary(t), "run", "--attach", attachName, "--log-level", "debug"}
	if inGuestNetns {
		argv = append(argv, "--guest-netns", tp.GuestPath())
	}
	p := startProc(t, "masq", "ip", append(argv, args...)...)
	p.waitReady(t, readyLine, readyTimeout)
	return p
}

// TestAttachGuestNetns: masq attached to a veth end in the guest's
// namespace (--guest-netns): the guest gets its lease by DHCP (address,
// router, MTU), fetches the blob from the outside host whole, and serves a
// forwarded port to the outside host.
func TestAttachGuestNetns(t *testing.T) { attachServes(t, true) }

// TestAttachPodNetns: the same with the veth end in masq's own namespace,
// as KubeVirt's tap is in the launcher pod.
func TestAttachPodNetns(t *testing.T) { attachServes(t, false) }

func attachServes(t *testing.T, inGuestNetns bool) {
	tp := newTopology(t, 1500)
	ns := tp.Pod
	if inGuestNetns {
		ns = tp.Guest
	}
	attachVeth(t, tp, ns)
	srv := startPeer(t, tp.Out, "http server", "http",
		"-listen", outAddr4+":"+httpPort, "-size", strconv.Itoa(blobSize))
	m := startAttached(t, tp, inGuestNetns, "--ports", fwdPort)
	if !strings.Contains(m.log(), "kind=attach") || !strings.Contains(m.log(), "offload=true") {
		t.Errorf("masq did not log an attached link with offload:\n%s", m.log())
	}
	if got, _ := inNetns(ns, "cat", "/proc/sys/net/ipv6/conf/"+attachName+"/disable_ipv6"); strings.TrimSpace(got) != "1" {
		t.Errorf("IPv6 on %s: disable_ipv6 = %q, want 1", attachName, got)
	}
	code, out, l := newUDHCPC(t, tp).run(t)
	if code != 0 {
		t.Fatalf("udhcpc exited %d:\n%s", code, out)
	}
	checkLease(t, l, want{mtu: tp.MTU})
	checkGuestAddr(t, tp)
	fetchBlob(t, tp, "http://"+outAddr4+":"+httpPort+"/blob", srv, podAddr4)
	guest := guestHTTP(t, tp, fwdPort)
	checkHTTPIn(t, tp, guest, "http://"+podAddr4+":"+fwdPort+"/", outAddr4)
}

// TestAttachRefuses: masq refuses, before serving anything, an interface
// the pod's kernel answers on (an IPv4 address: exit 2, naming the
// interface and the address), a missing interface (exit 2), and runs
// without CAP_NET_RAW (exit 1, one line saying so).
func TestAttachRefuses(t *testing.T) {
	tp := newTopology(t, 1500)
	attachVeth(t, tp, tp.Pod)
	masq := []string{"netns", "exec", tp.Pod}
	run := []string{masqBinary(t), "run", "--attach"}
	for _, tc := range []struct {
		name  string
		setup func()
		args  []string
		code  int
		want  []string
	}{
		{"ipv4 address", func() { ip(t, "-n", tp.Pod, "addr", "add", "198.19.0.1/24", "dev", attachName) },
			append(run, attachName), 2, []string{`"` + attachName + `"`, "198.19.0.1/24"}},
		{"missing", func() {}, append(run, "nosuch0"), 2, []string{`"nosuch0"`, "no such interface"}},
		{"no CAP_NET_RAW", func() { ip(t, "-n", tp.Pod, "addr", "flush", "dev", attachName) },
			append([]string{"setpriv", "--bounding-set", "-net_raw", "--inh-caps", "-net_raw"}, append(run, attachName)...),
			1, []string{"CAP_NET_RAW"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.setup()
			code, out := runBounded(readyTimeout, "ip", append(masq, tc.args...)...)
			t.Logf("exit %d: %s", code, strings.TrimSpace(out))
			if code != tc.code {
				t.Errorf("exit %d, want %d", code, tc.code)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("message does not contain %q", w)
				}
			}
			if lines := strings.Count(strings.TrimSpace(out), "\n") + 1; lines > 3 {
				t.Errorf("%d lines of output, want the reason in a line or so", lines)
			}
		})
	}
}
