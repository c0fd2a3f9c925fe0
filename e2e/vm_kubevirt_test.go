package e2e

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/masqnet/masq/kubevirt/hook"
)

// sidecarVMI is the VMI virt-launcher hands the hook: one interface on
// the pod network, bound to masq, forwarding fwdPort.
const sidecarVMI = `{"metadata":{"name":"vm-e2e"},"spec":{"domain":{"devices":{"interfaces":[
	{"name":"default","binding":{"name":"masq"},"ports":[{"port":` + fwdPort + `}]}]}},
	"networks":[{"name":"default","pod":{}}]}}`

// TestVMKubevirtSidecar: masq's binding plugin sidecar in the pod answers
// a real OnDefineDomain gRPC call (as virt-launcher makes it) with the
// domain whose interface connects to 127.0.0.1:PORT, having started masq
// there for the VM the VMI describes; a QEMU guest connected as libvirt
// would for that <interface type='client'> gets its lease, fetches the
// blob and serves the forwarded port the VMI lists.
func TestVMKubevirtSidecar(t *testing.T) {
	buildVMGuest(t)
	tp := newTopology(t, 1500)
	srv := blobServer(t, tp)
	const port = "40402"
	side, sock := startSidecar(t, tp, "--port", port)
	out, err := defineDomain(t, sock)
	if err != nil {
		t.Fatalf("OnDefineDomain: %v\nsidecar:\n%s", err, side.log())
	}
	if !strings.Contains(string(out), `type="client"`) || !strings.Contains(string(out), `port="`+port+`"`) {
		t.Fatalf("the hook's domain has no client interface to port %s:\n%s", port, out)
	}
	// What libvirt runs for <interface type='client'><source address='127.0.0.1' port='PORT'/>.
	vm := startVM(t, tp.Pod, []string{"-netdev", "socket,id=" + vmNetdevID + ",connect=127.0.0.1:" + port}, vmActions()...)
	vmServes(t, tp, srv, vm, 1500)
	// The sidecar confined itself once masq was set up, and still answers
	// the hook. The pod gives no ping socket (ping_group_range "1 0"), so
	// it kept CAP_NET_RAW for raw ICMP sockets, and nothing else.
	checkConfined(t, side.cmd.Process.Pid, netRawCaps)
	if _, err := defineDomain(t, sock); err != nil {
		t.Errorf("OnDefineDomain again, confined: %v", err)
	}
}

// startSidecar runs `masq kubevirt sidecar` (with extra args) in tp's pod
// namespace and waits until it serves the hook API on the socket it
// returns.
func startSidecar(t *testing.T, tp *topology, args ...string) (*proc, string) {
	t.Helper()
	sock := t.TempDir() + "/masq.sock"
	argv := append([]string{"netns", "exec", tp.Pod, masqBinary(t), "kubevirt", "sidecar",
		"--hook-socket", sock, "--log-level", "debug"}, args...)
	side := startProc(t, "sidecar", "ip", argv...)
	side.waitReady(t, "serving KubeVirt's hook API", readyTimeout)
	return side, sock
}

// defineDomain makes KubeVirt's OnDefineDomain call on the basic domain
// through the hook socket and returns the domain XML answered.
func defineDomain(t *testing.T, sock string) ([]byte, error) {
	t.Helper()
	domain, err := os.ReadFile("../testdata/kubevirt/domain-basic.xml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := hook.NewClient(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return c.OnDefineDomain(ctx, domain, []byte(sidecarVMI))
}
