package inbound

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// TestGrowReceiveBuffer checks that a forwarded UDP port's socket gets a
// larger receive buffer than the kernel's default: all of it as root (CI),
// what net.core.rmem_max allows otherwise.
func TestGrowReceiveBuffer(t *testing.T) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	before, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF)
	if err != nil {
		t.Fatal(err)
	}
	growReceiveBuffer(fd)
	after, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF)
	if err != nil {
		t.Fatal(err)
	}
	want := before
	if os.Geteuid() == 0 {
		want = udpReceiveBuffer // the kernel reports twice what was set
	}
	if after < want {
		t.Errorf("SO_RCVBUF %d after growReceiveBuffer (%d before), want at least %d", after, before, want)
	}
}
