package e2e

import (
	"strings"
	"testing"
	"time"
)

// jumboMTU is the veth MTU of the DHCP tests: masq must offer the pod
// interface's MTU, and 9000 is unlike any default.
const jumboMTU = 9000

// guestHostname is given to masq as --hostname and must reach the guest.
const guestHostname = "vm-e2e"

// TestDHClient gets a lease with isc dhclient: every promised option is
// right, the guest's tap is configured, and a tap that masq created is gone
// once masq exits 0 on SIGTERM.
func TestDHClient(t *testing.T) {
	tp := newTopology(t, jumboMTU)
	m := startMasq(t, tp, "masq", "--hostname", guestHostname)
	c := newDHClient(t, tp)

	code, out, l := c.run(t)
	if code != 0 {
		t.Fatalf("dhclient exited %d:\n%s", code, out)
	}
	if l["reason"] != "BOUND" {
		t.Errorf("dhclient's last script call was %q, want BOUND:\n%s", l["reason"], out)
	}
	checkLease(t, l, want{mtu: jumboMTU, hostname: guestHostname})
	checkGuestAddr(t, tp)

	if code := m.stop(t); code != 0 {
		t.Errorf("masq exited %d after SIGTERM, want 0", code)
	}
	if !waitFor(5*time.Second, func() bool { return !tapExists(tp) }) {
		t.Errorf("%s that masq created is still in the guest after masq exited", tapName)
	}
}

// TestRequestOtherAddress: a guest asking for an address that is not its
// own (INIT-REBOOT with a lease from elsewhere) is NAKed, then gets
// 10.0.2.2 the usual way.
func TestRequestOtherAddress(t *testing.T) {
	tp := newTopology(t, jumboMTU)
	startMasq(t, tp, "masq")
	c := newDHClient(t, tp)
	c.seedLease(t, "10.0.2.50")

	code, out, l := c.run(t)
	if code != 0 {
		t.Fatalf("dhclient exited %d:\n%s", code, out)
	}
	if !strings.Contains(out, "DHCPREQUEST for 10.0.2.50") || !strings.Contains(out, "DHCPNAK from "+gateway4) {
		t.Errorf("dhclient's REQUEST for 10.0.2.50 was not NAKed by %s:\n%s", gateway4, out)
	}
	if l["reason"] != "BOUND" || l["ip"] != guest4 {
		t.Errorf("dhclient: reason %q address %q, want BOUND %s:\n%s", l["reason"], l["ip"], guest4, out)
	}
}

// TestUDHCPC gets a lease with busybox udhcpc, with the same checks.
func TestUDHCPC(t *testing.T) {
	tp := newTopology(t, jumboMTU)
	startMasq(t, tp, "masq", "--hostname", guestHostname)
	c := newUDHCPC(t, tp)

	code, out, l := c.run(t)
	if code != 0 {
		t.Fatalf("udhcpc exited %d:\n%s", code, out)
	}
	if l["reason"] != "bound" {
		t.Errorf("udhcpc's last script call was %q, want bound:\n%s", l["reason"], out)
	}
	checkLease(t, l, want{mtu: jumboMTU, hostname: guestHostname})
	checkGuestAddr(t, tp)
}

// TestDHCPMTUFlag checks that --mtu, not the pod interface's MTU, is offered.
func TestDHCPMTUFlag(t *testing.T) {
	const mtu = 4000
	tp := newTopology(t, jumboMTU)
	startMasq(t, tp, "masq", "--mtu", "4000")
	code, out, l := newUDHCPC(t, tp).run(t)
	if code != 0 {
		t.Fatalf("udhcpc exited %d:\n%s", code, out)
	}
	checkLease(t, l, want{mtu: mtu})
}
