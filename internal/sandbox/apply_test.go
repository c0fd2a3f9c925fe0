package sandbox

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// childEnv marks the test binary's re-execution that confines itself:
// Apply cannot be undone, so it never runs in the test process itself.
const childEnv = "MASQ_SANDBOX_TEST_CHILD"

// TestApply confines a child process (this test binary, run again) that
// has many threads, and checks there that every thread is confined, that
// a socket still opens and carries data, and that what the allowlist
// leaves out fails with EPERM.
func TestApply(t *testing.T) {
	if os.Getenv(childEnv) == "1" {
		applyChild(t)
		return
	}
	cmd := exec.Command(childBinary(t), "-test.run=^TestApply$", "-test.v")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("confined child: %v\n%s", err, out)
	}
	t.Logf("child:\n%s", out)
}

// childBinary is this test binary, or, under the race detector (which
// links cgo), this package's tests built without cgo.
func childBinary(t *testing.T) string {
	if !raceEnabled {
		return os.Args[0]
	}
	bin := filepath.Join(t.TempDir(), "sandbox.test")
	build := exec.Command("go", "test", "-c", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the child without cgo: %v\n%s", err, out)
	}
	return bin
}

// applyChild is TestApply in the child.
func applyChild(t *testing.T) {
	// Threads the runtime made before Apply, some of them locked.
	var wg sync.WaitGroup
	release := make(chan struct{})
	for range 8 {
		wg.Go(func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			<-release
		})
	}
	rep, err := Apply(Options{})
	close(release)
	wg.Wait()
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if !rep.Seccomp || rep.KeptCaps != 0 || rep.Threads < 2 {
		t.Errorf("report %+v: want a filter, no capability, several threads", rep)
	}
	// Threads made after Apply inherit it.
	done := make(chan struct{})
	go func() { runtime.LockOSThread(); <-done }()
	threads, err := Threads(0)
	close(done)
	if err != nil {
		t.Fatal(err)
	}
	for _, th := range threads {
		if th.CapEff != 0 || th.CapPrm != 0 || !th.NoNewPrivs || th.Seccomp != 2 {
			t.Errorf("thread %d not confined: %+v", th.TID, th)
		}
	}
	if err := loopbackExchange(); err != nil {
		t.Errorf("TCP over loopback after Apply: %v", err)
	}
	// A uevent netlink socket needs no privilege: only the filter
	// refuses it.
	if _, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_KOBJECT_UEVENT); !errors.Is(err, unix.EPERM) {
		t.Errorf("uevent netlink socket after Apply: %v, want EPERM", err)
	}
	if err := unix.Exec("/bin/true", []string{"true"}, nil); !errors.Is(err, unix.EPERM) {
		t.Errorf("execve after Apply: %v, want EPERM", err)
	}
	if _, err := os.Create(os.DevNull); !errors.Is(err, unix.EPERM) {
		t.Errorf("open for writing after Apply: %v, want EPERM", err)
	}
}

// loopbackExchange connects a TCP socket to a listener on 127.0.0.1 and
// sends a byte across, with the system calls themselves: package net
// would link cgo into the test binary, where Apply cannot work.
func loopbackExchange() error {
	ln, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(ln)
	if err := unix.Bind(ln, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	if err := unix.Listen(ln, 1); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	sa, err := unix.Getsockname(ln)
	if err != nil {
		return err
	}
	c, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(c)
	if err := unix.Connect(c, sa); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	a, _, err := unix.Accept4(ln, unix.SOCK_CLOEXEC)
	if err != nil {
		return fmt.Errorf("accept: %w", err)
	}
	defer unix.Close(a)
	if _, err := unix.Write(c, []byte{42}); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	b := make([]byte, 1)
	if n, err := unix.Read(a, b); err != nil || n != 1 || b[0] != 42 {
		return fmt.Errorf("read: %d bytes %v, %v", n, b, err)
	}
	return nil
}
