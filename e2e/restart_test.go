package e2e

import (
	"regexp"
	"strings"
	"testing"
)

// TestRestart: masq keeps no lease state, so a guest that got its lease from
// one masq keeps its address and network across a restart. The tap is made
// beforehand, so it (and the guest's address on it) outlives masq. After the
// restart the new masq must ACK both kinds of REQUEST a guest sends for a
// lease it holds: dhclient's INIT-REBOOT (broadcast, requested address
// 10.0.2.2) and udhcpc's RENEWING (unicast from 10.0.2.2 to 10.0.2.1).
func TestRestart(t *testing.T) {
	tp := newTopology(t, jumboMTU)
	precreateTap(t, tp)
	requireTool(t, "ping", "iputils-ping")
	first := startMasq(t, tp, "masq#1")

	dc := newDHClient(t, tp)
	code, out, l := dc.run(t)
	if code != 0 || l["reason"] != "BOUND" {
		t.Fatalf("dhclient exited %d, script's last reason %q:\n%s", code, l["reason"], out)
	}
	uc := newUDHCPC(t, tp)
	renewer := uc.start(t) // Holds its lease in the foreground.
	checkGuestAddr(t, tp)
	ping(t, tp, gateway4, 1)

	if code := first.stop(t); code != 0 {
		t.Errorf("masq#1 exited %d after SIGTERM, want 0", code)
	}
	if !tapExists(tp) {
		t.Fatalf("%s made before masq did not survive masq's exit", tapName)
	}
	checkGuestAddr(t, tp)

	second := startMasq(t, tp, "masq#2")
	code, out, l = dc.run(t) // Same lease file: INIT-REBOOT, a REQUEST for 10.0.2.2.
	if code != 0 {
		t.Fatalf("dhclient (reboot) exited %d:\n%s", code, out)
	}
	if l["reason"] != "REBOOT" || l["ip"] != guest4 {
		t.Errorf("dhclient after restart: reason %q address %q, want REBOOT %s (its REQUEST was not ACKed):\n%s",
			l["reason"], l["ip"], guest4, out)
	}
	if !ackLogged(second.log(), guest4) {
		t.Errorf("masq#2 logged no ACK for %s", guest4)
	}

	if l := renewer.renew(t); l["ip"] != guest4 {
		t.Errorf("udhcpc renewed to %q, want %s", l["ip"], guest4)
	}
	for _, line := range strings.Split(second.log(), "\n") {
		if strings.Contains(line, "dhcp:") { // One ACK per REQUEST, unicast or not.
			t.Logf("masq#2: %s", line)
		}
	}
	checkGuestAddr(t, tp)
	ping(t, tp, gateway4, 1)
}

// ackPattern matches a log line about a DHCP ACK.
var ackPattern = regexp.MustCompile(`(?i)\back\b|dhcpack`)

// ackLogged reports whether log has a line about an ACK that names addr.
func ackLogged(log, addr string) bool {
	for _, line := range strings.Split(log, "\n") {
		if ackPattern.MatchString(line) && strings.Contains(line, addr) {
			return true
		}
	}
	return false
}
