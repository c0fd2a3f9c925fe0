package e2e

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// rootlessUID is the unprivileged user the rootless test runs masq as:
// nobody.
const rootlessUID = "65534"

// rootlessScript builds the README's rootless set-up inside a user
// namespace of nobody's (which also owns a mount and a PID namespace, so
// every process of it dies with the script): a tun node nobody may open
// bound over /dev/net/tun, an outside namespace on a veth, a guest
// namespace, masq serving the guest's tap; then the guest takes a lease,
// connects out, and the outside connects in. $1 is a directory nobody
// owns, holding masq, netpeer and the tun node.
const rootlessScript = `set -eu
D=$1
mount --bind "$D/tun" /dev/net/tun
mount -t tmpfs tmpfs /run/netns
ip netns add out
ip netns add guest
ip link set lo up
echo "0 0" >/proc/sys/net/ipv4/ping_group_range  # ping sockets: no raw ICMP socket, no CAP_NET_RAW kept
ip link add eth0 type veth peer name eth0 netns out
ip addr add 198.18.0.2/24 dev eth0
ip link set eth0 up
ip route add default via 198.18.0.1
ip -n out addr add 198.18.0.1/24 dev eth0
ip -n out link set eth0 up
ip netns exec out "$D/netpeer" tcpecho -listen 198.18.0.1:7007 >"$D/out.log" 2>&1 &
"$D/masq" run --guest-netns /run/netns/guest --tap tap0 --resolv-conf /dev/null --ports 8080 >"$D/masq.log" 2>&1 &
masq=$!
i=0
until grep -q 'masq ready' "$D/masq.log"; do
	i=$((i + 1)); [ $i -lt 100 ] || { echo "masq not ready in 10 s"; exit 1; }; sleep 0.1
done
awk '{print "uid_map:", $1, $2, $3}' /proc/self/uid_map
grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp):' /proc/$masq/status
ip netns exec guest udhcpc -i tap0 -f -n -q -t 5 -T 1 -s "$D/lease.sh"
ip netns exec guest "$D/netpeer" connect -to 198.18.0.1:7007 -echo outbound -timeout 5s
ip netns exec guest "$D/netpeer" tcpecho -listen :8080 >"$D/guest.log" 2>&1 &
i=0
until grep -q ready "$D/guest.log"; do
	i=$((i + 1)); [ $i -lt 100 ] || { echo "guest server not ready in 10 s"; exit 1; }; sleep 0.1
done
ip netns exec out "$D/netpeer" connect -to 198.18.0.2:8080 -echo inbound -timeout 5s
kill $masq
wait $masq
echo "masq exit: $?"
`

// rootlessLease is udhcpc's script in the rootless guest: it configures
// the lease's address and default route.
const rootlessLease = `#!/bin/sh
case "$1" in
deconfig) ip link set "$interface" up ;;
bound|renew)
	ip addr replace "$ip/$subnet" dev "$interface"
	for r in $router; do ip route replace default via "$r" dev "$interface"; break; done ;;
esac
`

// TestRootless: masq run by an unprivileged user (nobody) inside a user
// namespace it owns serves a guest namespace made there: masq starts,
// confines itself, the guest gets a lease and connects to the outside,
// and the outside reaches the guest's forwarded port, all without any
// privilege outside that user namespace. Only the tun node the user may
// open is made by root, as an administrator would.
func TestRootless(t *testing.T) {
	requireTool(t, "setpriv", "util-linux")
	requireTool(t, "unshare", "util-linux")
	requireTool(t, "udhcpc", "udhcpc")
	dir := rootlessDir(t)
	out, code := runRootless(t, dir)
	t.Logf("rootless run (exit %d):\n%s", code, out)
	if code != 0 {
		b, _ := os.ReadFile(filepath.Join(dir, "masq.log"))
		t.Fatalf("rootless masq failed (exit %d); masq's log:\n%s", code, b)
	}
	for _, want := range []string{
		"uid_map: 0 " + rootlessUID + " 1", // root in the namespace is nobody outside
		"CapEff:\t0000000000000000", "NoNewPrivs:\t1", "Seccomp:\t2",
		"echo=outbound", "echo=inbound", "masq exit: 0",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("rootless run printed no %q", want)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "masq.log")); !strings.Contains(string(b), "dhcp: ack") {
		t.Errorf("masq acknowledged no lease; its log:\n%s", b)
	}
}

// runRootless runs rootlessScript as nobody in new user, network, mount
// and PID namespaces and returns its output and exit code.
func runRootless(t *testing.T, dir string) (string, int) {
	t.Helper()
	script := filepath.Join(dir, "rootless.sh")
	writeFile(t, script, rootlessScript, 0o755)
	code, out := runBounded(60*time.Second, "setpriv", "--reuid="+rootlessUID, "--regid="+rootlessUID, "--clear-groups", "--",
		"unshare", "--user", "--map-root-user", "--net", "--mount", "--pid", "--fork", "--kill-child", "--mount-proc",
		"sh", script, dir)
	return out, code
}

// rootlessDir makes a directory nobody owns and may reach, holding copies
// of masq and netpeer, the lease script and a tun device node anyone may
// open; it is removed at the end of the test.
func rootlessDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "masq-rootless-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	copyExecutable(t, masqBinary(t), filepath.Join(dir, "masq"))
	copyExecutable(t, peerBinary(t), filepath.Join(dir, "netpeer"))
	writeFile(t, filepath.Join(dir, "lease.sh"), rootlessLease, 0o755)
	tun := filepath.Join(dir, "tun")
	if err := unix.Mknod(tun, unix.S_IFCHR|0o666, int(unix.Mkdev(10, 200))); err != nil {
		t.Fatalf("make a tun node: %v", err)
	}
	if err := os.Chmod(tun, 0o666); err != nil { // past the umask
		t.Fatal(err)
	}
	if err := os.Chown(dir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	return dir
}

// copyExecutable copies the program at src to dst, mode 0755.
func copyExecutable(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
