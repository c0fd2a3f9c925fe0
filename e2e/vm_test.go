package e2e

import (
	"context"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The QEMU test guest: a Debian kernel and a busybox initramfs built by
// test/vm/build.sh (see its /init, test/vm/init), booted under TCG (KVM is not
// usable on the test machines). It gets its lease by DHCP, prints lines
// "VM ..." on its serial console, runs the actions given to startVM and
// powers off.
const (
	// vmBuildTimeout bounds test/vm/build.sh: a download of ~72 MB and an
	// initramfs; a cached guest takes about a second.
	vmBuildTimeout = 5 * time.Minute
	// vmLeaseTimeout bounds a boot until the guest has its lease: about
	// 2.3 s with qboot and the uncompressed kernel (6 s with SeaBIOS and the
	// bzImage, which TCG is slow to decompress); more on two busy cores.
	vmLeaseTimeout = 20 * time.Second
	// vmExitTimeout bounds QEMU's exit after the guest printed "VM done".
	vmExitTimeout = 10 * time.Second
	// vmMAC is the guest NIC's MAC address.
	vmMAC = "52:54:00:12:34:56"
	// vmNetdevID is the id the netdev given to startVM must have.
	vmNetdevID = "n0"
	// qemuBin is QEMU's system emulator, from the Debian package qemu-system-x86.
	qemuBin = "qemu-system-x86_64"
	// qbootROM is the minimal firmware (Debian's qemu-system-data) that
	// boots the uncompressed kernel at its PVH entry point.
	qbootROM = "/usr/share/qemu/qboot.rom"
)

// vmBlobSize is the body the VM fetches: TCG moves a few MB/s.
const vmBlobSize = 16 << 20

// TestVMBridgedTap: a real guest kernel under QEMU, whose tap is bridged to
// masq's tap, gets its lease (10.0.2.2/24, router 10.0.2.1, MTU 1500) and
// fetches 16 MiB from the outside host through masq: the body arrives whole
// and the server saw the pod's address.
func TestVMBridgedTap(t *testing.T) {
	buildVMGuest(t) // Before the topology: skip early, and keep the build out of the boot time.
	tp := newTopology(t, 1500)
	srv := startPeer(t, tp.Out, "http server", "http",
		"-listen", outAddr4+":"+httpPort, "-size", strconv.Itoa(vmBlobSize))
	netdev := bridgeVMTap(t, tp)
	startMasq(t, tp, "masq")
	start := time.Now()
	vm := startVM(t, tp.Guest, netdev, "masq.fetch=http://"+outAddr4+":"+httpPort+"/blob")

	lease := vm.waitVM(t, "lease", vmLeaseTimeout)
	t.Logf("VM %s, %v after QEMU started", lease, time.Since(start).Round(10*time.Millisecond))
	for k, want := range map[string]string{"ip": guest4 + "/24", "router": gateway4, "mtu": "1500"} {
		if got := field(lease, k); got != want {
			t.Errorf("VM lease %s=%q, want %q", k, got, want)
		}
	}

	got := vm.waitVM(t, "sha256=", fetchTimeout)
	t.Logf("VM %s", got)
	want := field(srv.log(), "sha256")
	if field(got, "sha256") != want || field(got, "bytes") != strconv.Itoa(vmBlobSize) {
		t.Errorf("VM got %s; server sent sha256=%s bytes=%d", got, want, vmBlobSize)
	}
	if seen := srv.seen("tcp"); len(seen) != 1 || hostOf(seen[0]) != podAddr4 {
		t.Errorf("server saw clients %q, want one from the pod's %s", seen, podAddr4)
	}
	vm.waitVM(t, "done", vmExitTimeout)
	vm.waitExit(t, vmExitTimeout)
}

var (
	// vmOnce runs test/vm/build.sh once per test binary; vmDir is the
	// directory it printed (holding vmlinux, bzImage and initrd), vmErr why
	// there is none.
	vmOnce sync.Once
	vmDir  string
	vmErr  error
)

// buildVMGuest returns the directory of the built test guest, running
// test/vm/build.sh (which caches its result by package versions) once per
// test binary. t skips without root, fails without QEMU, and fails when the
// guest cannot be built.
func buildVMGuest(t *testing.T) string {
	t.Helper()
	requireRoot(t)
	if _, err := exec.LookPath(qemuBin); err != nil {
		t.Fatalf("%s not found: install the Debian package qemu-system-x86 to run the VM tests (%v)", qemuBin, err)
	}
	vmOnce.Do(func() { vmDir, vmErr = runVMBuild() })
	if vmErr != nil {
		t.Fatalf("cannot build the test guest: %v", vmErr)
	}
	return vmDir
}

// runVMBuild runs test/vm/build.sh into its default cache and returns the
// directory it printed last.
func runVMBuild() (string, error) {
	script, err := filepath.Abs("../test/vm/build.sh")
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), vmBuildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", script)
	cmd.WaitDelay = time.Second
	var stderr syncBuffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", &vmBuildError{err: err, log: stderr.String()}
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1], nil
}

// vmBuildError is a failed test/vm/build.sh with what it printed.
type vmBuildError struct {
	err error
	log string
}

func (e *vmBuildError) Error() string { return "test/vm/build.sh: " + e.err.Error() + "\n" + e.log }

// startVM boots the test guest under QEMU inside network namespace ns and
// kills it in t.Cleanup (logging its console if t failed). netdevArgs give
// QEMU the guest NIC's backend and must define the netdev "n0", e.g.
// {"-netdev", "tap,id=n0,ifname=vmtap0,script=no,downscript=no"}; the NIC is
// a virtio-net-pci with MAC 52:54:00:12:34:56. actions go on the kernel
// command line, run in order after the lease: "masq.fetch=URL" (prints
// "VM sha256=HEX bytes=N secs=S", or "VM fetch failed ..."), "masq.serve=PORT"
// (busybox httpd; prints "VM serving port=PORT"), "masq.hold=N" (stays up N
// seconds). The guest prints "VM lease ip=A/N router=R mtu=M uptime=S" (or
// "VM lease failed") first and "VM done" last, then powers off, which ends
// QEMU. Wait for its lines with (*proc).waitVM.
func startVM(t *testing.T, ns string, netdevArgs []string, actions ...string) *proc {
	t.Helper()
	dir := buildVMGuest(t)
	appendLine := strings.Join(append([]string{"console=ttyS0", "quiet", "panic=1"}, actions...), " ")
	args := []string{"netns", "exec", ns, qemuBin,
		"-accel", "tcg", "-cpu", "qemu64", "-m", "256",
		"-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio", "-no-reboot",
		"-bios", qbootROM,
		"-kernel", filepath.Join(dir, "vmlinux"),
		"-initrd", filepath.Join(dir, "initrd"),
		"-append", appendLine,
		"-device", "virtio-net-pci,netdev=" + vmNetdevID + ",mac=" + vmMAC + ",romfile=",
	}
	return startProc(t, "vm", "ip", append(args, netdevArgs...)...)
}

// waitVM waits until the guest's console has a line "VM <what>...", and
// returns it from what on. t fails if the guest does not print it within
// timeout or QEMU exits without having printed it.
func (p *proc) waitVM(t *testing.T, what string, timeout time.Duration) string {
	t.Helper()
	var line string
	exited := false
	found := waitFor(timeout, func() bool {
		select {
		case <-p.done:
			exited = true
		default:
		}
		var ok bool
		line, ok = vmLine(p.log(), what)
		return ok || exited
	})
	switch {
	case line != "":
		return line
	case exited:
		t.Fatalf("%s exited (%v) without printing %q", p.name, p.err, "VM "+what)
	case !found:
		t.Fatalf("%s did not print %q within %v", p.name, "VM "+what, timeout)
	}
	return ""
}

// vmLine returns the first whole console line that has "VM <what>", from
// what on. Console lines end in \r\n and the firmware's escape sequences may
// precede the first one, so the marker is looked for anywhere in a line.
func vmLine(console, what string) (string, bool) {
	// Only whole lines: the console is read while QEMU writes it, and a
	// line without its newline yet may still be growing.
	if i := strings.LastIndexByte(console, '\n'); i >= 0 {
		console = console[:i]
	} else {
		console = ""
	}
	for _, l := range strings.Split(console, "\n") {
		if i := strings.Index(l, "VM "+what); i >= 0 {
			return strings.TrimSpace(l[i+len("VM "):]), true
		}
	}
	return "", false
}

// waitExit fails t unless the process exits with status 0 within timeout.
func (p *proc) waitExit(t *testing.T, timeout time.Duration) {
	t.Helper()
	select {
	case <-p.done:
		if p.err != nil {
			t.Fatalf("%s exited: %v", p.name, p.err)
		}
	case <-time.After(timeout):
		t.Fatalf("%s did not exit within %v", p.name, timeout)
	}
}

// vmTapName is QEMU's tap in the bridged topology.
const vmTapName = "vmtap0"

// bridgeVMTap makes tp's guest namespace the host of a QEMU guest on a
// tap: masq's tap0 (made here, before masq starts, so masq attaches to
// it) and QEMU's vmtap0 are joined by a kernel bridge br0. It returns the
// netdev arguments for startVM. Everything lives in the guest namespace
// and goes with it.
func bridgeVMTap(t *testing.T, tp *topology) []string {
	t.Helper()
	precreateTap(t, tp)
	ip(t, "-n", tp.Guest, "link", "add", "br0", "type", "bridge", "stp_state", "0")
	ip(t, "-n", tp.Guest, "tuntap", "add", "dev", vmTapName, "mode", "tap")
	for _, dev := range []string{tapName, vmTapName} {
		ip(t, "-n", tp.Guest, "link", "set", dev, "master", "br0", "up")
	}
	ip(t, "-n", tp.Guest, "link", "set", "br0", "up")
	return []string{"-netdev", "tap,id=" + vmNetdevID + ",ifname=" + vmTapName + ",script=no,downscript=no"}
}
