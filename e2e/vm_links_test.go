package e2e

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// Real QEMU guests on each of masq's links: the guest kernel gets its
// lease (address, router, MTU) from masq, fetches a 16 MiB blob from the
// outside host whole, and serves a page the outside host reaches through
// a forwarded port of the pod.

// vmHold is how long the guest stays up after its actions, for the
// outside host to reach its server: the test ends it sooner by killing
// QEMU.
const vmHold = "masq.hold=60"

// vmServes checks a VM booted with vmActions: its lease has mtu, its
// fetch from srv arrives whole, and the outside host reaches its page at
// the pod's fwdPort.
func vmServes(t *testing.T, tp *topology, srv, vm *proc, mtu int) {
	t.Helper()
	lease := vm.waitVM(t, "lease", vmLeaseTimeout)
	t.Logf("VM %s", lease)
	for k, want := range map[string]string{"ip": guest4 + "/24", "router": gateway4, "mtu": strconv.Itoa(mtu)} {
		if got := field(lease, k); got != want {
			t.Errorf("VM lease %s=%q, want %q", k, got, want)
		}
	}
	got := vm.waitVM(t, "sha256=", fetchTimeout)
	t.Logf("VM %s", got)
	if want := field(srv.log(), "sha256"); field(got, "sha256") != want || field(got, "bytes") != strconv.Itoa(vmBlobSize) {
		t.Errorf("VM got %s; the server sent sha256=%s bytes=%d", got, want, vmBlobSize)
	}
	vm.waitVM(t, "serving port="+fwdPort, vmLeaseTimeout)
	code, out, took := curlFrom(t, tp.Out, "http://"+podAddr4+":"+fwdPort+"/")
	if code != 0 || !strings.Contains(out, "masq test guest") {
		t.Fatalf("outside client through the forwarded port: curl exited %d after %v: %q", code, took, out)
	}
	t.Logf("outside client reached the VM's server through %s:%s in %v", podAddr4, fwdPort, took.Round(time.Millisecond))
}

// vmActions are the guest's actions for vmServes.
func vmActions() []string {
	return []string{"masq.fetch=http://" + outAddr4 + ":" + httpPort + "/blob", "masq.serve=" + fwdPort, vmHold}
}

// blobServer runs the outside host's HTTP server of the VM's blob.
func blobServer(t *testing.T, tp *topology) *proc {
	t.Helper()
	return startPeer(t, tp.Out, "http server", "http", "-listen", outAddr4+":"+httpPort, "-size", strconv.Itoa(vmBlobSize))
}

// qemuTap makes a tap for QEMU in namespace ns, down and without
// addresses, for masq to attach to before QEMU opens it; it returns the
// netdev arguments for startVM. The tap goes with its namespace.
func qemuTap(t *testing.T, ns string) []string {
	t.Helper()
	ip(t, "-n", ns, "tuntap", "add", "dev", vmTapName, "mode", "tap", "vnet_hdr")
	return []string{"-netdev", "tap,id=" + vmNetdevID + ",ifname=" + vmTapName + ",script=no,downscript=no,vhost=off"}
}

// TestVMAttachGuestNetns: QEMU holds its tap in the guest namespace (as
// libvirt's <interface type='ethernet'> does) and masq serves it with
// --attach --guest-netns.
func TestVMAttachGuestNetns(t *testing.T) {
	buildVMGuest(t)
	tp := newTopology(t, 1500)
	srv := blobServer(t, tp)
	netdev := qemuTap(t, tp.Guest)
	argv := []string{"netns", "exec", tp.Pod, masqBinary(t), "run", "--attach", vmTapName,
		"--guest-netns", tp.GuestPath(), "--ports", fwdPort, "--log-level", "debug"}
	startProc(t, "masq", "ip", argv...).waitReady(t, readyLine, readyTimeout)
	vm := startVM(t, tp.Guest, netdev, vmActions()...)
	vmServes(t, tp, srv, vm, 1500)
}

// TestVMAttachPodNetns: QEMU's tap in masq's own namespace, as KubeVirt's
// tap is in the launcher pod (domainAttachmentType: tap), on a pod of MTU
// 9000: the guest's lease carries 9000.
func TestVMAttachPodNetns(t *testing.T) {
	buildVMGuest(t)
	tp := newTopology(t, 9000)
	srv := blobServer(t, tp)
	netdev := qemuTap(t, tp.Pod)
	argv := []string{"netns", "exec", tp.Pod, masqBinary(t), "run", "--attach", vmTapName,
		"--ports", fwdPort, "--log-level", "debug"}
	startProc(t, "masq", "ip", argv...).waitReady(t, readyLine, readyTimeout)
	vm := startVM(t, tp.Pod, netdev, vmActions()...)
	vmServes(t, tp, srv, vm, 9000)
}

// startSocketMasq runs `masq run --socket addr` in the pod, forwarding
// fwdPort, and waits until it is ready.
func startSocketMasq(t *testing.T, tp *topology, addr string) *proc {
	t.Helper()
	argv := []string{"netns", "exec", tp.Pod, masqBinary(t), "run", "--socket", addr,
		"--ports", fwdPort, "--log-level", "debug"}
	p := startProc(t, "masq", "ip", argv...)
	p.waitReady(t, readyLine, readyTimeout)
	return p
}

// TestVMSocketStream: QEMU's stream netdev (7.2+) connects to masq's unix
// socket; when that VM has powered off, a second QEMU connects to the same
// masq and is served again (a VM reboot, a QEMU restart).
func TestVMSocketStream(t *testing.T) {
	buildVMGuest(t)
	tp := newTopology(t, 1500)
	srv := blobServer(t, tp)
	sock := t.TempDir() + "/vm.sock"
	startSocketMasq(t, tp, sock)
	netdev := []string{"-netdev", "stream,id=" + vmNetdevID + ",server=off,addr.type=unix,addr.path=" + sock}
	vm := startVM(t, tp.Pod, netdev, append([]string{"masq.ra"}, vmActions()...)...)
	// The guest kernel takes its IPv6 default route from masq's RA.
	ra := vm.waitVM(t, "ra ", vmLeaseTimeout)
	t.Logf("VM %s", ra)
	if !strings.Contains(ra, "default via "+gatewayLinkLocal) {
		t.Errorf("the VM's IPv6 default route: %q, want one via %s from masq's RA", ra, gatewayLinkLocal)
	}
	vmServes(t, tp, srv, vm, 1500)
	vm.kill()
	again := startVM(t, tp.Pod, netdev, "masq.hold=0")
	lease := again.waitVM(t, "lease", vmLeaseTimeout)
	if field(lease, "ip") != guest4+"/24" {
		t.Fatalf("the reconnected VM's lease: %s", lease)
	}
	again.waitVM(t, "done", vmExitTimeout)
}

// TestVMSocketTCP: QEMU's legacy socket netdev, what libvirt's
// <interface type='client'> (and masq's KubeVirt binding) writes, connects
// to masq over TCP on the pod's loopback.
func TestVMSocketTCP(t *testing.T) {
	buildVMGuest(t)
	tp := newTopology(t, 1500)
	srv := blobServer(t, tp)
	const port = "40400"
	startSocketMasq(t, tp, "tcp:127.0.0.1:"+port)
	vm := startVM(t, tp.Pod, []string{"-netdev", "socket,id=" + vmNetdevID + ",connect=127.0.0.1:" + port}, vmActions()...)
	vmServes(t, tp, srv, vm, 1500)
}
