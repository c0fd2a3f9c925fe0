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
	// errPending is set when the last wait ended for an error pending
	// on the socket (an ICMP error with IP_RECVERR), not for data. Only
	// the flow's goroutine uses it.
	errPending bool
	check      func(fd uintptr) bool // p.readable, bound once to avoid an allocation per wait
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
	if errno == unix.EAGAIN {
		// A UDP socket's peek fails with a pending error, a ping socket's
		// does not (a non-blocking read of a datagram socket skips
		// sock_error): its queued errors show only as POLLERR, and the
		// wake-up for them must not be slept through. One poll, only
		// when about to wait.
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if n, _ := unix.Poll(pfd, 0); n > 0 && pfd[0].Revents&unix.POLLERR != 0 {
			p.errPending = true
			return true
		}
	}
	p.errPending = errno != 0 && errno != unix.EAGAIN && errno != unix.EINTR
	return errno != unix.EAGAIN && errno != unix.EINTR
}
