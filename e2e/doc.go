// Package e2e holds masq's end-to-end tests. They need root: each test builds
// its own network namespaces (an outside host, the pod masq runs in, and a
// guest whose kernel sits behind masq's tap device), runs the masq binary and
// real DHCP clients (isc-dhcp-client's dhclient, busybox udhcpc), ping and
// curl, and removes everything it made, even when it fails. Without root
// every test skips.
//
// Tests named TestVM* run a real guest kernel under QEMU (TCG) instead: the
// guest of test/vm/build.sh, started with startVM, reports on its serial
// console (see vm_test.go). They skip when QEMU is not installed.
//
// The servers of the outside host and the pod, and the guest's clients that
// curl and ping do not cover (UDP, DNS, many TCP connections, timed
// connects), are the netpeer helper in internal/netpeer.
//
// Only 198.18.0.0/15, 2001:db8::/32, 10.0.2.0/24, fd10:0:2::/120 and loopback
// are used, and only inside namespaces the tests created.
//
// The masq binary is built once per test binary from ./cmd/masq, or taken
// from $MASQ_BIN when set; netpeer is always built.
package e2e
