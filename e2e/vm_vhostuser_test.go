package e2e

import (
	"strings"
	"testing"
)

// vhostUserArgs are QEMU's arguments for a virtio-net device whose
// back-end is masq's vhost-user socket at sock: the guest's memory in a
// shared memfd (vhost-user needs it shared), the netdev on the socket.
// The device has no MSI-X vectors: under TCG (no KVM irqfd) QEMU 7.2
// segfaults in msix_set_vector_notifiers when it starts a vhost-user
// device's MSI-X notifiers; legacy interrupts avoid that path.
func vhostUserArgs(sock string) []string {
	return []string{
		"-global", "virtio-net-pci.vectors=0",
		"-object", "memory-backend-memfd,id=mem,size=256M,share=on", "-numa", "node,memdev=mem",
		"-chardev", "socket,id=vu0,path=" + sock,
		"-netdev", "vhost-user,id=" + vmNetdevID + ",chardev=vu0",
	}
}

// TestVMVhostUser: QEMU's virtio-net device with masq as its vhost-user
// back-end: the guest gets its lease with the MTU, fetches 16 MiB whole,
// serves a forwarded port; then QEMU is killed, a new one (the guest
// booting again, fresh rings) connects to the same masq and is served.
func TestVMVhostUser(t *testing.T) {
	buildVMGuest(t)
	tp := newTopology(t, 1500)
	srv := blobServer(t, tp)
	sock := t.TempDir() + "/vhost.sock"
	argv := []string{"netns", "exec", tp.Pod, masqBinary(t), "run", "--vhost-user", sock,
		"--ports", fwdPort, "--log-level", "debug"}
	startProc(t, "masq", "ip", argv...).waitReady(t, readyLine, readyTimeout)
	vm := startVM(t, tp.Pod, vhostUserArgs(sock), vmActions()...)
	vmServes(t, tp, srv, vm, 1500)
	vm.kill()
	again := startVM(t, tp.Pod, vhostUserArgs(sock), "masq.hold=0")
	lease := again.waitVM(t, "lease", vmLeaseTimeout)
	if field(lease, "ip") != guest4+"/24" {
		t.Fatalf("the restarted VM's lease: %s", lease)
	}
	again.waitVM(t, "done", vmExitTimeout)
}

// TestVMKubevirtSidecarVhostUser: the binding's vhost-user form. The
// sidecar, given --vhost-user, answers OnDefineDomain with a vhostuser
// interface on its socket and shared memfd memory, having started masq
// listening there; a QEMU guest connected as libvirt would for that
// interface gets its lease, fetches the blob and serves the forwarded port.
func TestVMKubevirtSidecarVhostUser(t *testing.T) {
	buildVMGuest(t)
	tp := newTopology(t, 1500)
	srv := blobServer(t, tp)
	vhost := t.TempDir() + "/masq-vhost.sock"
	side, sock := startSidecar(t, tp, "--vhost-user="+vhost)
	out, err := defineDomain(t, sock)
	if err != nil {
		t.Fatalf("OnDefineDomain: %v\nsidecar:\n%s", err, side.log())
	}
	for _, want := range []string{`<interface type="vhostuser">`, `path="` + vhost + `" mode="client"`,
		`<source type="memfd"/>`, `<access mode="shared"/>`} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("the hook's domain lacks %s:\n%s", want, out)
		}
	}
	// What libvirt runs for that <interface type='vhostuser'> and memfd
	// memory backing.
	vm := startVM(t, tp.Pod, vhostUserArgs(vhost), vmActions()...)
	vmServes(t, tp, srv, vm, 1500)
}
