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
	n         *NAT
	guest     *guestConn
	pod       *podConn
	resetOnce sync.Once
}

// halfConn is one side of a tcpFlow as the copy loop sees it.
type halfConn interface {
	// waitReadable blocks, holding no buffer, until Read will not block.
	waitReadable() error
	Read(b []byte) (int, error)
	Write(b []byte) (int, error)
	// closeWrite sends the peer a FIN.
	closeWrite()
}

// newTCPFlow joins a connected guest endpoint and a pod connection.
func newTCPFlow(n *NAT, ep tcpip.Endpoint, wq *waiter.Queue, pod net.Conn) *tcpFlow {
	return &tcpFlow{n: n, guest: newGuestConn(ep, wq), pod: &podConn{Conn: pod, ready: newPodReadiness(pod)}}
}

// splice copies both ways until both directions have ended, then closes
// both sides.
func (f *tcpFlow) splice() {
	var wg sync.WaitGroup
	wg.Go(func() { f.copy(f.guest, f.pod) })
	f.copy(f.pod, f.guest)
	wg.Wait()
	f.close()
}

// copy moves bytes from src to dst until src's EOF, which it passes on as
// a FIN, or an error on either side, which resets both.
func (f *tcpFlow) copy(dst, src halfConn) {
	for {
		if err := src.waitReadable(); err != nil {
			f.abort()
			return
		}
		b := f.n.getBuffer()
		nr, rerr := src.Read(*b)
		var werr error
		if nr > 0 {
			_, werr = dst.Write((*b)[:nr])
		}
		f.n.putBuffer(b)
		switch {
		case werr != nil || (rerr != nil && rerr != io.EOF):
			f.abort()
			return
		case rerr == io.EOF:
			dst.closeWrite()
			return
		}
	}
}

// abort resets both sides: an RST to the guest and to the pod's peer. It
// implements flow; it is safe to call more than once and concurrently.
func (f *tcpFlow) abort() {
	f.resetOnce.Do(func() {
		f.guest.Abort()
		resetConn(f.pod.Conn)
	})
}

// close releases both sides after the copies have ended.
func (f *tcpFlow) close() {
	f.guest.Close()
	f.pod.Close()
}

// podConn is the pod's side of a tcpFlow.
type podConn struct {
	net.Conn
	ready *podReadiness // nil when the conn has no fd to poll
}

func (p *podConn) waitReadable() error {
	if p.ready == nil {
		return nil // Read blocks with the buffer held instead
	}
	return p.ready.wait()
}

// closeWrite half-closes the connection (a FIN to its peer) when it can,
// and closes it otherwise.
func (p *podConn) closeWrite() {
	type writeCloser interface{ CloseWrite() error }
	if wc, ok := p.Conn.(writeCloser); ok {
		if err := wc.CloseWrite(); err == nil || !errors.Is(err, net.ErrClosed) {
			return
		}
	}
	p.Conn.Close()
}
