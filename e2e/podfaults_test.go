package e2e

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestPodFaults: faults on the pod's side reach the guest as errors, for
// the flows they touch only; other flows and DHCP go on, and masq never
// exits on them. In turn: an outside destination that accepts and never
// reads (the guest's writes block that flow alone), the pod's nameserver
// unreachable, its default route gone, its address removed and re-added.
func TestPodFaults(t *testing.T) {
	tp := newTopology(t, 1500)
	m := startMasq(t, tp, "masq")
	dhcp := newUDHCPC(t, tp)
	leaseOK := func(t *testing.T) {
		t.Helper()
		if code, out, _ := dhcp.run(t); code != 0 {
			t.Errorf("udhcpc exited %d:\n%s", code, out)
		}
	}
	leaseOK(t)
	guestStatic6(t, tp, false)
	startPeer(t, tp.Out, "tcp echo", "tcpecho", "-listen", outAddr4+":"+echoPort, "-quiet")
	echo := outAddr4 + ":" + echoPort
	echoOK := func(t *testing.T, why string) {
		t.Helper()
		code, out := runPeer(t, tp.Guest, 10*time.Second, "connect", "-to", echo, "-echo", "hi", "-timeout", "5s")
		if code != 0 || !strings.Contains(out, "echo=hi") {
			t.Errorf("%s: guest connect to %s: exit %d\n%s", why, echo, code, out)
		}
	}
	echoOK(t, "before the faults")

	t.Run("destination never reads", func(t *testing.T) {
		hold := outAddr4 + ":7010"
		startPeer(t, tp.Out, "hold", "hold", "-listen", hold)
		var wg sync.WaitGroup
		var code int
		var out string
		wg.Go(func() {
			// 256 MiB into a receive window that never opens: the push
			// blocks until its own deadline.
			code, out = runPeer(t, tp.Guest, 30*time.Second, "push", "-to", hold,
				"-size", "268435456", "-chunk", "65536", "-timeout", "8s")
		})
		time.Sleep(time.Second) // the push's buffers fill meanwhile
		for i := range 10 {
			echoOK(t, fmt.Sprintf("while a flow is blocked (%d)", i))
		}
		leaseOK(t)
		wg.Wait()
		if code == 0 {
			t.Errorf("a push of 256 MiB to a peer that never reads ended well:\n%s", out)
		}
		t.Logf("push to a peer that never reads: exit %d: %s", code, strings.TrimSpace(out))
	})

	t.Run("nameserver unreachable", func(t *testing.T) {
		// The pod's nameserver (198.18.0.53, on the outside link, which
		// the lease offers the guest) does not exist: the pod's own stack
		// reports host unreachable once its ARP requests go unanswered,
		// and the guest hears it (a Linux UDP socket reports host and net
		// unreachable only with IP_RECVERR, as systemd-resolved sets it;
		// without, it waits out its timeout, as behind a kernel NAT).
		code, out := runPeer(t, tp.Guest, 20*time.Second, "udpconnect", "-recverr", "-to", nameserver+":53", "-msg", "query", "-timeout", "10s")
		t.Logf("guest UDP to the nameserver: exit %d: %s", code, strings.TrimSpace(out))
		if code == 0 || !strings.Contains(out, "no route to host") {
			t.Errorf("guest UDP to the nameserver gone: exit %d, want host unreachable (no route to host)\n%s", code, out)
		}
		code, out = runPeer(t, tp.Guest, 30*time.Second, "connect", "-to", nameserver+":53", "-timeout", "20s")
		t.Logf("guest TCP to the nameserver: exit %d: %s", code, strings.TrimSpace(out))
		if code == 0 || !strings.Contains(out, "no route to host") {
			t.Errorf("guest TCP to the nameserver gone: exit %d, want no route to host\n%s", code, out)
		}
		echoOK(t, "nameserver unreachable")
	})

	t.Run("default route gone", func(t *testing.T) {
		ip(t, "-n", tp.Pod, "route", "del", "default")
		ip(t, "-n", tp.Pod, "-6", "route", "del", "default")
		for _, c := range []struct{ mode, to, want string }{
			{"connect", "198.18.9.9:80", "no route to host"},
			{"udpconnect", "198.18.9.9:53", "network is unreachable"},
			{"connect", "[2001:db8:9::9]:80", "no route to host"},
			{"udpconnect", "[2001:db8:9::9]:53", "network is unreachable"},
		} {
			args := []string{c.mode, "-to", c.to, "-timeout", "10s"}
			if c.mode == "udpconnect" {
				args = append(args, "-recverr", "-msg", "x")
			}
			code, out := runPeer(t, tp.Guest, 20*time.Second, args...)
			t.Logf("guest %s %s without a default route: exit %d: %s", c.mode, c.to, code, strings.TrimSpace(out))
			if code == 0 || !strings.Contains(out, c.want) {
				t.Errorf("guest %s %s: exit %d, want %q\n%s", c.mode, c.to, code, c.want, out)
			}
		}
		echoOK(t, "without a default route (the outside host is on the link)")
		leaseOK(t)
		ip(t, "-n", tp.Pod, "route", "add", "default", "via", outAddr4)
		ip(t, "-n", tp.Pod, "-6", "route", "add", "default", "via", outAddr6)
	})

	t.Run("address removed and re-added", func(t *testing.T) {
		ip(t, "-n", tp.Pod, "addr", "del", podAddr4+"/24", "dev", "eth0")
		code, out := runPeer(t, tp.Guest, 20*time.Second, "connect", "-to", echo, "-timeout", "10s")
		t.Logf("guest connect without the pod's address: exit %d: %s", code, strings.TrimSpace(out))
		if code == 0 || !strings.Contains(out, "no route to host") {
			t.Errorf("guest connect to %s without the pod's address: exit %d, want no route to host\n%s", echo, code, out)
		}
		leaseOK(t)
		ip(t, "-n", tp.Pod, "addr", "add", podAddr4+"/24", "dev", "eth0")
		ip(t, "-n", tp.Pod, "route", "replace", "default", "via", outAddr4)
		echoOK(t, "the address back")
	})

	if code := m.stop(t); code != 0 {
		t.Errorf("masq exited %d after SIGTERM, want 0", code)
	}
}
