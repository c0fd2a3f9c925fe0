package e2e

import (
	"strings"
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
	ip(t, "-n", tp.Guest, "-6", "route", "add", "default", "via", gateway6, "dev", tapName)
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
