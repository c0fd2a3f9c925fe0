package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestPCAPReadByTcpdump: --pcap records a real guest's DHCP exchange, a
// ping of the gateway and an HTTP fetch through TSO (64 KiB segments on a
// jumbo link), and tcpdump reads the file: while masq runs (it flushes
// every second) and whole once masq has stopped.
func TestPCAPReadByTcpdump(t *testing.T) {
	requireTool(t, "tcpdump", "tcpdump")
	requireTool(t, "curl", "curl")
	tp := newTopology(t, jumboMTU)
	file := filepath.Join(t.TempDir(), "vm.pcap")
	const size = 4 << 20
	startPeer(t, tp.Out, "http server", "http", "-listen", outAddr4+":"+httpPort, "-size", strconv.Itoa(size))
	m := startMasq(t, tp, "masq", "--pcap", file)
	if code, out, _ := newUDHCPC(t, tp).run(t); code != 0 {
		t.Fatalf("udhcpc exited %d:\n%s", code, out)
	}
	ping(t, tp, gateway4, 1)
	if out, err := inNetns(tp.Guest, "curl", "-sS", "--fail", "-o", "/dev/null", "http://"+outAddr4+":"+httpPort+"/blob"); err != nil {
		t.Fatalf("guest: curl: %v\n%s", err, out)
	}

	var live string
	if !waitFor(5*time.Second, func() bool {
		live, _ = command("tcpdump", "-n", "-r", file)
		return strings.Contains(live, "echo reply")
	}) {
		t.Errorf("tcpdump -r on the running masq's capture shows no echo reply within 5s:\n%s", live)
	}
	if code := m.stop(t); code != 0 {
		t.Fatalf("masq exited %d", code)
	}
	out, err := command("tcpdump", "-n", "-e", "-r", file)
	if err != nil {
		t.Fatalf("tcpdump -r %s: %v\n%s", file, err, out)
	}
	for _, want := range []string{
		"link-type EN10MB (Ethernet)",
		"BOOTP/DHCP, Request from",
		"BOOTP/DHCP, Reply",
		"ARP (0x0806), length 42: Request who-has " + gateway4,
		"ICMP echo request",
		"ICMP echo reply",
		"> " + outAddr4 + "." + httpPort + ": Flags [S]",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("tcpdump -r %s: no %q", file, want)
		}
	}
	// The body came in segments beyond the MTU, recorded whole.
	biggest := 0
	for _, m := range regexp.MustCompile(`length (\d+)`).FindAllStringSubmatch(out, -1) {
		n, _ := strconv.Atoi(m[1])
		biggest = max(biggest, n)
	}
	if biggest <= jumboMTU {
		t.Errorf("largest frame recorded: %d bytes; want TSO segments beyond the MTU of %d", biggest, jumboMTU)
	}
	if !strings.Contains(m.log(), "packet capture stopped") {
		t.Errorf("masq logged no summary of the capture:\n%s", m.log())
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("capture file: %v, %v; want mode 0600", fi, err)
	}
	if t.Failed() {
		t.Logf("tcpdump -r:\n%s", out)
	}
}
