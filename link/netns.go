package link

import (
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// inNetns runs f on an OS thread that has joined the network namespace at
// path (or on the current goroutine when path is empty). The thread is
// locked and never unlocked, so the Go runtime discards it when f returns
// instead of reusing a thread in the wrong namespace. File descriptors f
// opens keep the namespace they were opened in.
func inNetns(path string, f func() error) error {
	if path == "" {
		return f()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		errc <- joinAndRun(path, f)
	}()
	return <-errc
}

// joinAndRun joins the namespace at path on the calling (locked) thread and
// runs f there.
func joinAndRun(path string, f func() error) error {
	ns, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open network namespace %q: %w", path, err)
	}
	defer unix.Close(ns)
	if err := unix.Setns(ns, unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("join network namespace %q: %w", path, err)
	}
	return f()
}
