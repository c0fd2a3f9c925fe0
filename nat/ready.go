package nat

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// podReadiness waits for a pod socket to become readable without holding a
// buffer, so an idle flow costs no buffer memory: buffers come from a pool
// only once data is there.
type podReadiness struct {
	rc   syscall.RawConn
	peek [1]byte
	// errno is what the last peek failed with: non-zero when a pending
	// error (an ICMP error with IP_RECVERR) made the socket readable.
	// Only the flow's goroutine uses it.
	errno syscall.Errno
	check func(fd uintptr) bool // p.readable, bound once to avoid an allocation per wait
}

// newPodReadiness returns a waiter for c, or nil when c exposes no file
// descriptor (then callers block in Read with a buffer held).
func newPodReadiness(c any) *podReadiness {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	p := &podReadiness{rc: rc}
	p.check = p.readable
	return p
}

// wait blocks until the socket has data, an EOF or an error to report, or
// is closed.
func (p *podReadiness) wait() error {
	return p.rc.Read(p.check)
}

// readable peeks one byte without blocking: true means a Read will not
// block (data, EOF or a pending error); false asks the runtime to wait for
// the next readiness event.
func (p *podReadiness) readable(fd uintptr) bool {
	_, _, errno := unix.Syscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&p.peek[0])), 1,
		unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
	p.errno = errno
	return errno != unix.EAGAIN && errno != unix.EINTR
}
