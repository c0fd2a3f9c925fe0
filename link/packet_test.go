package link

import (
	"bytes"
	"errors"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// gatewayMAC is masq's gateway MAC, which no interface of the pod has.
var gatewayMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0}

// vethNetns makes a network namespace with a veth pair vm0 (the guest's
// end, up) and att0 (masq's, down), and returns its path; everything is
// removed in t.Cleanup. It skips the test when not root.
func vethNetns(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates a network namespace")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatalf("ip(8) not found: install the Debian package iproute2 (%v)", err)
	}
	name := "masq-linktest-" + strings.ReplaceAll(t.Name(), "/", "-")
	if len(name) > 40 {
		name = name[:40]
	}
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	run(t, "ip", "-n", name, "link", "add", "vm0", "type", "veth", "peer", "name", "att0")
	run(t, "ip", "-n", name, "link", "set", "vm0", "up")
	return "/run/netns/" + name
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// rawSocket opens a plain AF_PACKET socket on ifname in netns: the guest's
// side of the link.
func rawSocket(t *testing.T, netns, ifname string) int {
	t.Helper()
	fd := -1
	err := inNetns(netns, func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		if fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL))); err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index})
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// etherFrame is an Ethernet frame to dst of an experimental EtherType
// carrying tag.
func etherFrame(dst net.HardwareAddr, tag string) []byte {
	f := append([]byte{}, dst...)
	f = append(f, 0x02, 0, 0, 0, 0, 0x99, 0x88, 0xb5) // src, EtherType 0x88b5
	return append(f, tag...)
}

// readTagged reads from fd, within timeout, frames until one carrying tag,
// and reports whether it came; frames of the kernel's own (IPv6, say) are
// skipped.
func readTagged(t *testing.T, fd int, tag string, timeout time.Duration) bool {
	t.Helper()
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 1<<16)
	for {
		ms := int(time.Until(deadline) / time.Millisecond)
		if ms <= 0 {
			return false
		}
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if n, err := unix.Poll(pfd, ms); err != nil && err != unix.EINTR {
			t.Fatal(err)
		} else if n == 0 {
			return false
		}
		n, err := unix.Read(fd, buf)
		if err == unix.EAGAIN || err == unix.EINTR {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(buf[:n], []byte(tag)) {
			return true
		}
	}
}

// TestPacketSeesGatewayFrames: frames the guest sends to the gateway's MAC
// (not the interface's own) reach the socket with the interface not in
// promiscuous mode; the guest gets what masq writes; masq reads neither
// its own frames nor others' outgoing ones. With and without virtio-net
// headers.
func TestPacketSeesGatewayFrames(t *testing.T) {
	for _, offload := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "vnet"}[offload], func(t *testing.T) {
			ns := vethNetns(t)
			p, err := OpenPacket(PacketConfig{Name: "att0", Netns: ns, MTU: 1400, Offload: offload})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			link := run(t, "ip", "-n", nsBase(ns), "-d", "link", "show", "att0")
			if !strings.Contains(link, "mtu 1400") || !strings.Contains(link, ",UP") || strings.Contains(link, "PROMISC") {
				t.Errorf("att0 is not up with MTU 1400 and without PROMISC:\n%s", link)
			}
			guest := rawSocket(t, ns, "vm0")
			var hdr []byte
			if offload {
				hdr = make([]byte, vnetHdrSize)
			}
			if _, err := unix.Write(guest, etherFrame(gatewayMAC, "to-gateway")); err != nil {
				t.Fatal(err)
			}
			if !readTagged(t, p.FD(), "to-gateway", 2*time.Second) {
				t.Fatal("masq's socket did not get the guest's frame to the gateway MAC")
			}
			if _, err := unix.Write(p.FD(), append(hdr, etherFrame(net.HardwareAddr{0x02, 0, 0, 0, 0, 0x99}, "to-guest")...)); err != nil {
				t.Fatal(err)
			}
			if !readTagged(t, guest, "to-guest", 2*time.Second) {
				t.Fatal("the guest did not get masq's frame")
			}
			if readTagged(t, p.FD(), "to-guest", 200*time.Millisecond) {
				t.Error("masq read back its own frame")
			}
			// The kernel never loops a frame back to the socket that sent
			// it; what PACKET_IGNORE_OUTGOING keeps out is the frames
			// anyone else in the pod sends out on the interface.
			other := rawSocket(t, ns, "att0")
			if _, err := unix.Write(other, etherFrame(net.HardwareAddr{0x02, 0, 0, 0, 0, 0x99}, "pod-out")); err != nil {
				t.Fatal(err)
			}
			if !readTagged(t, guest, "pod-out", 2*time.Second) {
				t.Fatal("the guest did not get the pod's frame")
			}
			if readTagged(t, p.FD(), "pod-out", 200*time.Millisecond) {
				t.Error("masq read a frame the pod sent out on the interface")
			}
		})
	}
}

// TestFilterOutgoing: the fallback for kernels without
// PACKET_IGNORE_OUTGOING drops frames sent out on the interface and
// passes the guest's.
func TestFilterOutgoing(t *testing.T) {
	ns := vethNetns(t)
	run(t, "ip", "-n", nsBase(ns), "link", "set", "att0", "up")
	var fd int
	err := inNetns(ns, func() error {
		ifi, err := net.InterfaceByName("att0")
		if err != nil {
			return err
		}
		if fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0); err != nil {
			return err
		}
		if err := filterOutgoing(fd); err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index})
	})
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	guest := rawSocket(t, ns, "vm0")
	other := rawSocket(t, ns, "att0")
	if _, err := unix.Write(other, etherFrame(net.HardwareAddr{0x02, 0, 0, 0, 0, 0x99}, "own")); err != nil {
		t.Fatal(err)
	}
	if !readTagged(t, guest, "own", 2*time.Second) {
		t.Fatal("the guest did not get the frame")
	}
	if readTagged(t, fd, "own", 200*time.Millisecond) {
		t.Error("the filter let an outgoing frame through")
	}
	if _, err := unix.Write(guest, etherFrame(gatewayMAC, "theirs")); err != nil {
		t.Fatal(err)
	}
	if !readTagged(t, fd, "theirs", 2*time.Second) {
		t.Error("the filter dropped the guest's frame")
	}
}

// TestOpenPacketRefuses: a missing interface, and one with IPv4 addresses
// (the pod's kernel would answer the guest), are refused with ErrUnusable
// and a message naming them; IPv6 is turned off on an accepted one.
func TestOpenPacketRefuses(t *testing.T) {
	ns := vethNetns(t)
	_, err := OpenPacket(PacketConfig{Name: "nosuch0", Netns: ns})
	if !errors.Is(err, ErrUnusable) || !strings.Contains(err.Error(), `"nosuch0"`) {
		t.Errorf("OpenPacket(nosuch0) = %v, want ErrUnusable naming it", err)
	}
	run(t, "ip", "-n", nsBase(ns), "addr", "add", "198.18.5.1/24", "dev", "att0")
	_, err = OpenPacket(PacketConfig{Name: "att0", Netns: ns})
	if !errors.Is(err, ErrUnusable) || !strings.Contains(err.Error(), "198.18.5.1/24") || !strings.Contains(err.Error(), `"att0"`) {
		t.Errorf("OpenPacket(att0 with 198.18.5.1/24) = %v, want ErrUnusable naming both", err)
	}
	run(t, "ip", "-n", nsBase(ns), "addr", "flush", "dev", "att0")
	p, err := OpenPacket(PacketConfig{Name: "att0", Netns: ns})
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
	got := run(t, "ip", "netns", "exec", nsBase(ns), "cat", "/proc/sys/net/ipv6/conf/att0/disable_ipv6")
	if strings.TrimSpace(got) != "1" {
		t.Errorf("att0's disable_ipv6 = %q, want 1", got)
	}
	if mine, err := os.ReadFile("/proc/sys/net/ipv6/conf/all/disable_ipv6"); err == nil && strings.TrimSpace(string(mine)) == "1" {
		t.Log("(IPv6 is off in the test's own namespace)")
	}
}

// nsBase returns the name of the namespace at /run/netns/NAME.
func nsBase(path string) string { return strings.TrimPrefix(path, "/run/netns/") }

// TestPacketOnTap: on a tap whose user side is held by someone else (QEMU;
// here the test), frames the guest writes to the gateway's MAC reach the
// socket on the kernel side without promiscuous mode, and frames written
// to the socket come out of the tap's user side.
func TestPacketOnTap(t *testing.T) {
	ns := vethNetns(t)
	tap, err := OpenTap(TapConfig{Name: "qemu0", Netns: ns})
	if err != nil {
		t.Fatal(err)
	}
	defer tap.Close()
	if err := unix.SetNonblock(tap.FD(), true); err != nil {
		t.Fatal(err)
	}
	p, err := OpenPacket(PacketConfig{Name: "qemu0", Netns: ns, Offload: true})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if link := run(t, "ip", "-n", nsBase(ns), "link", "show", "qemu0"); strings.Contains(link, "PROMISC") {
		t.Errorf("qemu0 is promiscuous:\n%s", link)
	}
	if _, err := unix.Write(tap.FD(), etherFrame(gatewayMAC, "from-vm")); err != nil {
		t.Fatal(err)
	}
	if !readTagged(t, p.FD(), "from-vm", 2*time.Second) {
		t.Fatal("the socket did not get the VM's frame to the gateway MAC")
	}
	frame := append(make([]byte, vnetHdrSize), etherFrame(net.HardwareAddr{0x52, 0x54, 0, 0, 0, 1}, "to-vm")...)
	if _, err := unix.Write(p.FD(), frame); err != nil {
		t.Fatal(err)
	}
	if !readTagged(t, tap.FD(), "to-vm", 2*time.Second) {
		t.Fatal("the VM did not get the socket's frame")
	}
}
