package inbound

import (
	"fmt"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// poller waits for readiness on many file descriptors with one epoll set
// and one goroutine. Inbound forwarding of every port of the pod means
// tens of thousands of listening sockets; a goroutine blocked in Accept
// for each would cost more memory than all the rest of masq.
type poller struct {
	epfd int
	wake int // eventfd that ends wait

	mu       sync.Mutex
	handlers map[int32]func() // by fd; guarded by mu
	closed   bool             // guarded by mu
}

func newPoller() (*poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	p := &poller{epfd: epfd, wake: wake, handlers: make(map[int32]func())}
	if err := p.add(wake, nil); err != nil {
		p.close()
		return nil, err
	}
	return p, nil
}

// add watches fd for readability; ready runs on the poller's goroutine
// each time fd becomes readable (level-triggered: until it is drained).
func (p *poller) add(fd int, ready func()) error {
	p.mu.Lock()
	p.handlers[int32(fd)] = ready
	p.mu.Unlock()
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return fmt.Errorf("epoll_ctl add fd %d: %w", fd, err)
	}
	return nil
}

// run dispatches readiness until stop is called.
func (p *poller) run() {
	events := make([]unix.EpollEvent, pollBatch)
	for {
		n, err := unix.EpollWait(p.epfd, events, -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return
		}
		for _, ev := range events[:n] {
			if int(ev.Fd) == p.wake {
				return
			}
			p.mu.Lock()
			ready := p.handlers[ev.Fd]
			p.mu.Unlock()
			if ready != nil {
				ready()
			}
		}
	}
}

// stop makes run return.
func (p *poller) stop() {
	var one = [8]byte{1} // an eventfd counter increment: 1, as 8 bytes
	unix.Write(p.wake, one[:])
}

// pause stops watching fd for d, then watches it again.
func (p *poller) pause(fd int, d time.Duration) {
	off := unix.EpollEvent{Fd: int32(fd)}
	unix.EpollCtl(p.epfd, unix.EPOLL_CTL_MOD, fd, &off)
	time.AfterFunc(d, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if !p.closed { // after close, fd may be another file's
			on := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}
			unix.EpollCtl(p.epfd, unix.EPOLL_CTL_MOD, fd, &on)
		}
	})
}

// close releases the epoll set; the watched fds stay the caller's, and
// must be closed after it.
func (p *poller) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	unix.Close(p.wake)
	unix.Close(p.epfd)
}

// pollBatch is how many ready sockets one epoll_wait returns at most: a
// burst of clients on more ports than that is served over several waits,
// with no socket starved (epoll rotates its ready list).
const pollBatch = 128
