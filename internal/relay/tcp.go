package relay

import (
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/masqnet/masq/flowtable"
)

// TCP is one proxied TCP connection: the guest's side is a gVisor
// endpoint, the pod's a socket. Bytes are copied both ways through pooled
// buffers taken only while data is ready, so an idle connection holds no
// buffer. A FIN on either side becomes a FIN (CloseWrite) on the other; an
// RST or error on either side resets both.
type TCP struct {
	bufs      *Pool
	guest     *guestConn
	pod       *podConn
	resetOnce sync.Once
	flow      *flowtable.Entry // counts the bytes; nil: nobody does
}

// halfConn is one side of a TCP as the copy loop sees it.
type halfConn interface {
	// read waits, holding no buffer, until there is data, EOF or an
	// error, then reads into a buffer from the NAT's pool, which the
	// caller returns. It reports io.EOF after the peer's FIN.
	read() (b *[]byte, n int, err error)
	Write(b []byte) (int, error)
	// closeWrite sends the peer a FIN.
	closeWrite()
}

// NewTCP joins a connected guest endpoint (with its waiter queue) and a
// pod connection, taking ownership of both: Splice closes them.
// Keepalive on the guest's side ends flows whose guest vanished (a VM
// reset) while the other side idles.
func NewTCP(bufs *Pool, ep tcpip.Endpoint, wq *waiter.Queue, pod net.Conn) *TCP {
	ep.SocketOptions().SetKeepAlive(true)
	return &TCP{bufs: bufs, guest: newGuestConn(bufs, ep, wq), pod: newPodConn(bufs, pod)}
}

// Account makes e count the bytes Splice copies and the guest side's
// segments, and marks it established. It must be called before Splice.
func (f *TCP) Account(e *flowtable.Entry) {
	f.flow = e
	e.SetSegments(f.segments)
	e.SetEstablished()
}

// segments returns the segments the guest's endpoint received and sent.
func (f *TCP) segments() (fromGuest, toGuest uint64) {
	if s, ok := f.guest.ep.Stats().(*tcp.Stats); ok {
		return s.SegmentsReceived.Value(), s.SegmentsSent.Value()
	}
	return 0, 0
}

// Splice copies both ways until both directions have ended, then closes
// both sides.
func (f *TCP) Splice() {
	var wg sync.WaitGroup
	wg.Go(func() { f.copy(f.guest, f.pod, f.flow.Count(false)) })
	f.copy(f.pod, f.guest, f.flow.Count(true))
	wg.Wait()
	f.Close()
}

// copy moves bytes from src to dst until src's EOF, which it passes on as
// a FIN, or an error on either side, which resets both. count (nil: none)
// counts what it moved.
func (f *TCP) copy(dst, src halfConn, count *flowtable.Half) {
	for {
		b, nr, rerr := src.read()
		var werr error
		if nr > 0 {
			// Counted before the write, so that what the receiver saw is
			// always counted.
			count.AddBytes(nr, time.Now().UnixNano())
			_, werr = dst.Write((*b)[:nr])
		}
		f.bufs.Put(b)
		switch {
		case werr != nil || (rerr != nil && rerr != io.EOF):
			f.Abort()
			return
		case rerr == io.EOF:
			count.Fin()
			dst.closeWrite()
			return
		}
	}
}

// Abort resets both sides: an RST to the guest and to the pod's peer. It
// implements Flow.
func (f *TCP) Abort() {
	f.resetOnce.Do(func() {
		f.guest.Abort()
		ResetConn(f.pod.Conn)
	})
}

// Close releases both sides; Splice does it when the copies have ended,
// and a flow that never spliced must be closed (after Abort).
func (f *TCP) Close() {
	f.guest.Close()
	f.pod.Close()
}

// podConn is the pod's side of a TCP.
type podConn struct {
	net.Conn
	bufs *Pool
	rc   syscall.RawConn // nil when the conn has no fd: reads then hold a buffer while they block

	// State of tryRead, used by the one reading goroutine.
	buf     *[]byte
	nr      int
	err     error
	tryRead func(fd uintptr) bool // p.readNow, bound once: no allocation per read
}

func newPodConn(bufs *Pool, c net.Conn) *podConn {
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
		b := p.bufs.Get()
		nr, err := p.Conn.Read(*b)
		return b, nr, err
	}
	p.buf, p.nr, p.err = nil, 0, nil
	if err := p.rc.Read(p.tryRead); err != nil { // closed
		if p.buf == nil {
			p.buf = p.bufs.Get()
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
		p.buf = p.bufs.Get()
	}
	for {
		n, err := unix.Read(int(fd), *p.buf)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			p.bufs.Put(p.buf)
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

// ResetConn closes c with a RST when it is a TCP connection.
func ResetConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}
