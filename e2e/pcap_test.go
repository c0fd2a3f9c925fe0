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

// TestLiveCapture: `masq capture --control SOCK --seconds N > FILE` on a
// running masq records N seconds of the guest's link (here its pings of
// the gateway) as a pcap tcpdump reads; and masq, stopped in the middle
// of a live capture, still exits at once and cleanly.
func TestLiveCapture(t *testing.T) {
	requireTool(t, "tcpdump", "tcpdump")
	requireTool(t, "ping", "iputils-ping")
	tp := newTopology(t, 1500)
	sock := filepath.Join(t.TempDir(), "control.sock")
	m := startMasq(t, tp, "masq", "--control", sock)
	guestStatic4(t, tp)
	file := filepath.Join(t.TempDir(), "live.pcap")
	done := make(chan struct{})
	var code int
	var out string
	go func() {
		defer close(done)
		code, out = runBounded(cmdTimeout, "sh", "-c", masqBinary(t)+" capture --control "+sock+" --seconds 3 > "+file)
	}()
	time.Sleep(500 * time.Millisecond) // the capture has begun
	ping(t, tp, gateway4, 3)
	<-done
	if code != 0 {
		t.Fatalf("masq capture exited %d:\n%s", code, out)
	}
	dump, err := command("tcpdump", "-n", "-r", file)
	if err != nil || !strings.Contains(dump, "ICMP echo request") || !strings.Contains(dump, "ICMP echo reply") {
		t.Errorf("tcpdump -r of the live capture: %v; want the guest's echo request and reply:\n%s", err, dump)
	}

	// A capture of a minute, cut short by masq's stop.
	go runBounded(cmdTimeout, "sh", "-c", masqBinary(t)+" capture --control "+sock+" --seconds 60 > /dev/null")
	time.Sleep(500 * time.Millisecond)
	start := time.Now()
	if code := m.stop(t); code != 0 {
		t.Errorf("masq exited %d when stopped during a live capture", code)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("masq took %v to stop during a live capture", took)
	}
}
