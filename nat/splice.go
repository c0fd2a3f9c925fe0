package nat

import (
	"errors"
	"io"
	"net"
	"sync"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/waiter"
)

// tcpFlow is one proxied TCP connection: the guest's side is a gVisor
// endpoint, the pod's a socket. Bytes are copied both ways through pooled
// buffers taken only while data is ready, so an idle connection holds no
// buffer. A FIN on either side becomes a FIN (CloseWrite) on the other; an
// RST or error on either side resets both.
type tcpFlow struct {
	n        *NAT
	guest    *guestConn
	pod      net.Conn
	podReady *podReadiness // nil when pod has no fd to poll

	resetOnce sync.Once
}

// newTCPFlow joins a connected guest endpoint and a pod connection.
func newTCPFlow(n *NAT, ep tcpip.Endpoint, wq *waiter.Queue, pod net.Conn) *tcpFlow {
	return &tcpFlow{n: n, guest: newGuestConn(ep, wq), pod: pod, podReady: newPodReadiness(pod)}
}

// splice copies both ways until both directions have ended, then closes
// both sides.
func (f *tcpFlow) splice() {
	var wg sync.WaitGroup
	wg.Go(f.podToGuest)
	f.guestToPod()
	wg.Wait()
	f.close()
}

// guestToPod copies the guest's bytes to the pod socket.
func (f *tcpFlow) guestToPod() {
	for {
		f.guest.waitReadable()
		b := f.n.getBuffer()
		nr, rerr := f.guest.Read(*b)
		var werr error
		if nr > 0 {
			_, werr = f.pod.Write((*b)[:nr])
		}
		f.n.putBuffer(b)
		switch {
		case werr != nil:
			f.abort()
			return
		case rerr == io.EOF:
			closeWrite(f.pod)
			return
		case rerr != nil:
			f.abort()
			return
		}
	}
}

// podToGuest copies the pod socket's bytes to the guest.
func (f *tcpFlow) podToGuest() {
	for {
		if f.podReady != nil {
			if err := f.podReady.wait(); err != nil {
				f.abort()
				return
			}
		}
		b := f.n.getBuffer()
		nr, rerr := f.pod.Read(*b)
		var werr error
		if nr > 0 {
			_, werr = f.guest.Write((*b)[:nr])
		}
		f.n.putBuffer(b)
		switch {
		case werr != nil:
			f.abort()
			return
		case rerr == io.EOF:
			f.guest.CloseWrite()
			return
		case rerr != nil:
			f.abort()
			return
		}
	}
}

// abort resets both sides: an RST to the guest and to the pod's peer. It
// implements flow; it is safe to call more than once and concurrently.
func (f *tcpFlow) abort() {
	f.resetOnce.Do(func() {
		f.guest.Abort()
		if tc, ok := f.pod.(*net.TCPConn); ok {
			tc.SetLinger(0) // close with RST
		}
		f.pod.Close()
	})
}

// close releases both sides after the copies have ended.
func (f *tcpFlow) close() {
	f.guest.Close()
	f.pod.Close()
}

// closeWrite half-closes c (a FIN to its peer) when it can, and closes it
// otherwise.
func closeWrite(c net.Conn) {
	type writeCloser interface{ CloseWrite() error }
	if wc, ok := c.(writeCloser); ok {
		if err := wc.CloseWrite(); err == nil || !errors.Is(err, net.ErrClosed) {
			return
		}
	}
	c.Close()
}
