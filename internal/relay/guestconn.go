package relay

import (
	"bytes"
	"errors"
	"io"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/waiter"
)

// guestConn is the guest's side of a proxied TCP connection: a connected
// gVisor endpoint read and written without allocating (gonet.TCPConn
// allocates its reader, writer and waiter entries on every call). It is
// used by one reader and one writer goroutine at a time.
type guestConn struct {
	bufs *Pool
	ep   tcpip.Endpoint
	wq   *waiter.Queue

	readEntry  waiter.Entry
	readReady  chan struct{}
	writeEntry waiter.Entry
	writeReady chan struct{}

	dst tcpip.SliceWriter // Read's destination, reused
	src bytes.Reader      // Write's source, reused
}

// errGuestClosed is a read or write on a connection the guest reset or
// masq aborted.
var errGuestClosed = errors.New("guest connection closed")

// readEvents are the events that make a read return: data, EOF, error.
const readEvents = waiter.ReadableEvents | waiter.EventHUp | waiter.EventErr

func newGuestConn(bufs *Pool, ep tcpip.Endpoint, wq *waiter.Queue) *guestConn {
	g := &guestConn{bufs: bufs, ep: ep, wq: wq}
	g.readEntry, g.readReady = waiter.NewChannelEntry(readEvents)
	g.writeEntry, g.writeReady = waiter.NewChannelEntry(waiter.WritableEvents | waiter.EventHUp | waiter.EventErr)
	return g
}

// waitReadable blocks until a Read will not block, holding no buffer.
func (g *guestConn) waitReadable() {
	if g.ep.Readiness(readEvents) != 0 {
		return
	}
	g.wq.EventRegister(&g.readEntry)
	defer g.wq.EventUnregister(&g.readEntry)
	for g.ep.Readiness(readEvents) == 0 {
		<-g.readReady
	}
}

// read implements halfConn.read.
func (g *guestConn) read() (*[]byte, int, error) {
	g.waitReadable()
	b := g.bufs.Get()
	nr, err := g.Read(*b)
	return b, nr, err
}

// Read reads what the guest sent into b, blocking until there is some.
// It returns io.EOF after the guest's FIN.
func (g *guestConn) Read(b []byte) (int, error) {
	for {
		g.dst = b
		res, err := g.ep.Read(&g.dst, tcpip.ReadOptions{})
		switch err.(type) {
		case nil:
			return res.Count, nil
		case *tcpip.ErrWouldBlock:
			g.waitReadable()
		case *tcpip.ErrClosedForReceive:
			return 0, io.EOF
		default:
			return 0, errGuestClosed
		}
	}
}

// Write sends all of b to the guest, blocking while the send buffer is
// full.
func (g *guestConn) Write(b []byte) (int, error) {
	registered := false
	defer func() {
		if registered {
			g.wq.EventUnregister(&g.writeEntry)
		}
	}()
	done := 0
	for done < len(b) {
		g.src.Reset(b[done:])
		n, err := g.ep.Write(&g.src, tcpip.WriteOptions{})
		done += int(n)
		switch err.(type) {
		case nil:
		case *tcpip.ErrWouldBlock:
			if !registered {
				// Register, then try again before waiting: the buffer may
				// have drained in between.
				g.wq.EventRegister(&g.writeEntry)
				registered = true
				continue
			}
			<-g.writeReady
		default:
			return done, errGuestClosed
		}
	}
	return done, nil
}

// closeWrite sends the guest a FIN.
func (g *guestConn) closeWrite() { g.ep.Shutdown(tcpip.ShutdownWrite) }

// Abort resets the connection: an RST to the guest.
func (g *guestConn) Abort() { g.ep.Abort() }

// Close releases the endpoint.
func (g *guestConn) Close() { g.ep.Close() }
