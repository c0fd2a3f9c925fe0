package nat

import (
	"errors"
	"io"
	"net"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/waiter"
)

// tcpFlow is one proxied TCP connection: the guest's side is a gVisor
// endpoint, the pod's a socket. Bytes are copied both ways through pooled
// buffers taken only while data is ready, so an idle connection holds no
// buffer. A FIN on either side becomes a FIN (CloseWrite) on the other; an
// RST or error on either side resets both.
type tcpFlow struct {
	bufs      *bufferPool
	guest     *guestConn
	pod       *podConn
	resetOnce sync.Once
}

// halfConn is one side of a tcpFlow as the copy loop sees it.
type halfConn interface {
	// read waits, holding no buffer, until there is data, EOF or an
	// error, then reads into a buffer from the NAT's pool, which the
	// caller returns. It reports io.EOF after the peer's FIN.
	read() (b *[]byte, n int, err error)
	Write(b []byte) (int, error)
	// closeWrite sends the peer a FIN.
	closeWrite()
}

// newTCPFlow joins a connected guest endpoint and a pod connection.
// Keepalive on the guest's side ends flows whose guest vanished (a VM
// reset) while the other side idles.
func newTCPFlow(bufs *bufferPool, ep tcpip.Endpoint, wq *waiter.Queue, pod net.Conn) *tcpFlow {
	ep.SocketOptions().SetKeepAlive(true)
	return &tcpFlow{bufs: bufs, guest: newGuestConn(bufs, ep, wq), pod: newPodConn(bufs, pod)}
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
		b, nr, rerr := src.read()
		var werr error
		if nr > 0 {
			_, werr = dst.Write((*b)[:nr])
		}
		f.bufs.put(b)
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
	bufs *bufferPool
	rc   syscall.RawConn // nil when the conn has no fd: reads then hold a buffer while they block

	// State of tryRead, used by the one reading goroutine.
	buf     *[]byte
	nr      int
	err     error
	tryRead func(fd uintptr) bool // p.readNow, bound once: no allocation per read
}

func newPodConn(bufs *bufferPool, c net.Conn) *podConn {
	p := &podConn{Conn: c, bufs: bufs}
	if sc, ok := c.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			p.rc = rc
			p.tryRead = p.readNow
		}
	}
	return p
}

func (p *podConn) read() (*[]byte, int, error) {
	if p.rc == nil {
		b := p.bufs.get()
		nr, err := p.Conn.Read(*b)
		return b, nr, err
	}
	p.buf, p.nr, p.err = nil, 0, nil
	if err := p.rc.Read(p.tryRead); err != nil { // closed
		if p.buf == nil {
			p.buf = p.bufs.get()
		}
		return p.buf, 0, err
	}
	return p.buf, p.nr, p.err
}

// readNow reads what the socket has into a pooled buffer without blocking.
// With nothing to read it gives the buffer back and returns false, and the
// runtime's poller waits for the socket: an idle connection holds no
// buffer, and a read costs one system call.
func (p *podConn) readNow(fd uintptr) bool {
	if p.buf == nil {
		p.buf = p.bufs.get()
	}
	for {
		n, err := unix.Read(int(fd), *p.buf)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			p.bufs.put(p.buf)
			p.buf = nil
			return false
		case err != nil:
			p.err = err
		case n == 0:
			p.err = io.EOF
		default:
			p.nr = n
		}
		return true
	}
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
