package link

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Socket is a link endpoint that serves QEMU's stream netdev protocol on a
// listening socket (unix or TCP): each Ethernet frame is preceded by its
// length as a 4-byte big-endian integer, with no virtio-net header. QEMU
// connects with `-netdev stream,server=off,...` (7.2+) or the legacy
// `-netdev socket,connect=...`.
//
// One guest is served at a time: a second connection is closed at once,
// with a log line. When the guest goes away (a VM reboot, a QEMU restart)
// the Socket serves the next connection, without restarting anything;
// frames the stack writes while no guest is connected are dropped and
// counted (Stats().TxNoGuest), as a NIC with its cable out drops them.
//
// Writing never blocks the stack: a frame the socket cannot take at once
// is dropped and counted (TxQueueFull), as a tap drops it when its queue
// is full, and TCP recovers it. A frame the socket took only part of is
// finished from a copy of its tail by a goroutine that waits for the
// socket to drain: the stream never carries a partial frame, which would
// desynchronise the framing for good.
type Socket struct {
	ethernet // MTU, link address, framing
	// BurstNotifier's function is called after the frames of each read.
	BurstNotifier

	ln     net.Listener
	path   string // the unix socket file, removed by Close; "" for TCP
	log    *slog.Logger
	closed func(error)
	stats  counters

	mu         sync.RWMutex
	dispatcher stack.NetworkDispatcher // guarded by mu

	// wmu serialises writes to the guest and guards cur: a connection is
	// closed only with wmu held, so a writer never sees a closed fd.
	wmu   sync.Mutex
	cur   *guestConn // guarded by wmu; nil while no guest is connected
	batch writeBatch // guarded by wmu: reused by every WritePackets

	accepting bool // guarded by mu: the accept loop runs
	closeOnce sync.Once
	wg        sync.WaitGroup
}

var _ stack.LinkEndpoint = (*Socket)(nil)

// socketSlack is how far a frame's length may exceed the MTU and the
// Ethernet header: VLAN tags, a guest whose MTU is a little off. A longer
// length is no frame of this link: the guest is broken or hostile.
const socketSlack = 256

// socketReadSize is the reader's buffer: many MTU-sized frames per read
// system call. It is at least two of the largest frames (see NewSocket).
const socketReadSize = 256 << 10

// socketSendBuffer is the send buffer asked for each guest connection:
// room for the bursts a tap's 1000-frame queue absorbs. The default
// (~200 KiB) holds three 64 KiB frames, and a frame that does not fit is
// dropped (see Socket): jumbo TCP to the guest then crawls on timeouts.
const socketSendBuffer = 4 << 20

// SocketConfig configures ListenSocket.
type SocketConfig struct {
	// Addr is where to listen.
	Addr SocketAddr
	// Mode is the unix socket file's permission bits; 0 means 0600.
	Mode fs.FileMode
	// MTU is the link's MTU.
	MTU uint32
	// Logger receives a line per guest connection and refusal. Nil means
	// slog.Default().
	Logger *slog.Logger
	// Closed, if not nil, is called when the listener fails for good. A
	// guest disconnecting is not a failure.
	Closed func(error)
}

// ListenSocket listens on cfg.Addr and returns a Socket that serves the
// guest's connections once attached to a stack. A unix socket file is
// created with cfg.Mode, replacing a stale socket file of that path (but
// not a file of any other type), and removed by Close.
func ListenSocket(cfg SocketConfig) (*Socket, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &Socket{log: log, closed: cfg.Closed}
	s.mtu.Store(cfg.MTU)
	var err error
	if cfg.Addr.IsTCP() {
		s.ln, err = listenTCP(cfg.Addr, log)
	} else {
		s.ln, err = listenUnix(cfg.Addr.Path, cfg.Mode)
		s.path = cfg.Addr.Path
	}
	if err != nil {
		return nil, err
	}
	return s, nil
}

// listenTCP listens on a, warning when it is not a loopback address: the
// guest's link would be open to whoever reaches it.
func listenTCP(a SocketAddr, log *slog.Logger) (net.Listener, error) {
	ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(a.TCP))
	if err != nil {
		return nil, fmt.Errorf("listen for the guest: %w", err)
	}
	if !a.TCP.Addr().IsLoopback() {
		log.Warn("guest link listens on a non-loopback address: anyone who reaches it can be the guest", "addr", ln.Addr())
	}
	return ln, nil
}

// listenUnix listens on a unix socket file at path with the given mode
// (0: 0600), replacing a stale socket file.
func listenUnix(path string, mode fs.FileMode) (net.Listener, error) {
	if mode == 0 {
		mode = 0o600
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("%s exists and is not a socket (%s); refusing to replace it", path, fi.Mode())
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("%s: something listens there already (another masq?); refusing to take it over", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("replace stale socket: %w", err)
		}
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen for the guest: %w", err)
	}
	// Between bind and chmod the file has the umask's mode, which with
	// the usual 022 already keeps others from connecting (that needs
	// write permission).
	if err := os.Chmod(path, mode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("socket mode: %w", err)
	}
	return ln, nil
}

// Addr returns the address the Socket listens on (the TCP port chosen
// for port 0, say).
func (s *Socket) Addr() net.Addr { return s.ln.Addr() }

// Capabilities implements stack.LinkEndpoint.Capabilities. The stream
// carries whole frames with their checksums (QEMU offers the guest no
// offloads without a virtio-net header), which the stack verifies.
func (s *Socket) Capabilities() stack.LinkEndpointCapabilities {
	return stack.CapabilityResolutionRequired
}

// Attach implements stack.LinkEndpoint.Attach: a non-nil dispatcher
// starts accepting guests; nil (the stack removing its NIC) closes the
// Socket as Close does, so that Wait returns. A Socket serves one stack:
// its listener is not reopened.
func (s *Socket) Attach(d stack.NetworkDispatcher) {
	s.mu.Lock()
	s.dispatcher = d
	start := d != nil && !s.accepting
	s.accepting = s.accepting || start
	s.mu.Unlock()
	switch {
	case start:
		s.wg.Go(s.acceptLoop)
	case d == nil:
		s.Close()
	}
}

// IsAttached implements stack.LinkEndpoint.IsAttached.
func (s *Socket) IsAttached() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.dispatcher != nil
}

// Wait implements stack.LinkEndpoint.Wait.
func (s *Socket) Wait() { s.wg.Wait() }

// Close implements stack.LinkEndpoint.Close: it stops listening (removing
// the unix socket file), drops the guest's connection and waits for the
// Socket's goroutines. It may be called more than once.
func (s *Socket) Close() {
	s.closeOnce.Do(func() {
		s.ln.Close() // a UnixListener made by Listen unlinks its file
		s.wmu.Lock()
		if c := s.cur; c != nil {
			c.conn.Close() // its reader and flusher detach it
		}
		s.wmu.Unlock()
		s.wg.Wait()
	})
}

// SetOnCloseAction implements stack.LinkEndpoint.SetOnCloseAction.
func (s *Socket) SetOnCloseAction(func()) {}

// Stats returns the drops the link counted.
func (s *Socket) Stats() Stats { return s.stats.snapshot() }

// acceptLoop serves guests, one at a time, until the listener is closed.
func (s *Socket) acceptLoop() {
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				s.log.Error("guest link: accept failed", "err", err)
				if s.closed != nil {
					s.closed(fmt.Errorf("accept guest: %w", err))
				}
			}
			return
		}
		c, err := s.adopt(conn)
		if errors.Is(err, errBusy) {
			c, err = s.adoptAfterGrace(conn)
		}
		if err != nil {
			s.stats.guestsRefused.Add(1)
			s.log.Warn("guest connection refused", "remote", remote(conn), "reason", err)
			conn.Close()
			continue
		}
		s.log.Info("guest connected", "remote", remote(conn))
		s.wg.Go(func() { s.readLoop(c) })
		s.wg.Go(func() { s.flushLoop(c) })
	}
}

// reconnectGrace is how long a new connection waits for the guest's
// current one to end before it is refused: a QEMU that restarts (or
// reconnects) may connect before masq has read the old connection's end.
const reconnectGrace = time.Second

// adoptAfterGrace retries adopt while the current guest's connection may
// still be ending, for up to reconnectGrace.
func (s *Socket) adoptAfterGrace(conn net.Conn) (*guestConn, error) {
	deadline := time.Now().Add(reconnectGrace)
	for {
		time.Sleep(10 * time.Millisecond)
		c, err := s.adopt(conn)
		if !errors.Is(err, errBusy) || time.Now().After(deadline) {
			return c, err
		}
	}
}

// remote names a connection's peer for logs (an unnamed unix peer, QEMU's,
// shows as "@" or nothing).
func remote(conn net.Conn) string {
	if a := conn.RemoteAddr(); a != nil && a.String() != "" && a.String() != "@" {
		return a.String()
	}
	return "unix"
}

// errBusy refuses a second guest.
var errBusy = errors.New("a guest is already connected; one at a time")

// adopt makes conn the guest's connection, unless there is one already.
func (s *Socket) adopt(conn net.Conn) (*guestConn, error) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil, fmt.Errorf("%T has no file descriptor", conn)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, err
	}
	var fd int
	if err := rc.Control(func(f uintptr) { fd = int(f) }); err != nil {
		return nil, err
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.cur != nil {
		return nil, errBusy
	}
	if w, ok := conn.(interface{ SetWriteBuffer(int) error }); ok {
		w.SetWriteBuffer(socketSendBuffer) // best effort: capped at net.core.wmem_max
	}
	c := &guestConn{conn: conn, rc: rc, fd: fd, kick: make(chan struct{}, 1)}
	s.cur = c
	return c, nil
}

// drop ends c: closes it and, if it is the guest's connection, forgets
// it, so the next connection is served.
func (s *Socket) drop(c *guestConn) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.dropLocked(c)
}

// dropLocked is drop with s.wmu held.
func (s *Socket) dropLocked(c *guestConn) {
	if s.cur == c {
		s.cur = nil
	}
	if !c.closed {
		c.closed = true
		c.conn.Close()
		close(c.kick) // ends the flusher
	}
}

// guestConn is one guest connection.
type guestConn struct {
	conn net.Conn
	rc   syscall.RawConn
	fd   int // valid while !closed; written to only with Socket.wmu held
	// kick wakes the flusher when pending holds a frame's tail; closed
	// when the connection is.
	kick    chan struct{}
	closed  bool   // guarded by Socket.wmu
	pending []byte // guarded by Socket.wmu: the unsent tail of one frame
	tail    []byte // guarded by Socket.wmu: pending's storage, one frame
}

// readLoop delivers the guest's frames until the connection ends or
// carries a length no frame has.
func (s *Socket) readLoop(c *guestConn) {
	defer s.drop(c)
	r := newFrameReader(s.maxFrameLen())
	for {
		n, err := c.conn.Read(r.space())
		if n > 0 {
			err := r.parse(n, s.deliver)
			s.EndBurst() // a read holds at most socketReadSize bytes of frames
			if err != nil {
				s.stats.rxBadLength.Add(1)
				s.log.Warn("guest connection closed: bad frame length", "remote", remote(c.conn), "err", err)
				return
			}
		}
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				s.log.Info("guest disconnected", "remote", remote(c.conn), "err", err)
			}
			return
		}
	}
}

// maxFrameLen is the longest frame a guest may send.
func (s *Socket) maxFrameLen() int {
	return int(s.MTU()) + header.EthernetMinimumSize + socketSlack
}

// frameReader parses length-prefixed frames out of one buffer, many per
// read; a frame split across reads is completed by the next.
type frameReader struct {
	buf        []byte
	start, end int // unparsed bytes are buf[start:end]
	max        int // the longest frame allowed
}

func newFrameReader(maxLen int) *frameReader {
	return &frameReader{buf: make([]byte, max(socketReadSize, 2*(4+maxLen))), max: maxLen}
}

// space returns the buffer to read into next, at least room for the
// frame in progress.
func (r *frameReader) space() []byte {
	if r.start == r.end {
		r.start, r.end = 0, 0
	} else if len(r.buf)-r.start < 4+r.max {
		// Not sure to hold the frame in progress: move it to the front.
		r.end = copy(r.buf, r.buf[r.start:r.end])
		r.start = 0
	}
	return r.buf[r.end:]
}

// errFrameLen is a length no frame of the link has.
var errFrameLen = errors.New("frame length out of range")

// parse takes n more bytes read into space() and hands each whole frame to
// deliver, which must not keep it. A bad length is an error: the stream
// cannot be trusted past it.
func (r *frameReader) parse(n int, deliver func([]byte)) error {
	r.end += n
	for r.end-r.start >= 4 {
		size := binary.BigEndian.Uint32(r.buf[r.start:])
		if size == 0 || size > uint32(r.max) {
			return fmt.Errorf("%w: %d (1..%d)", errFrameLen, size, r.max)
		}
		if r.end-r.start < 4+int(size) {
			return nil
		}
		deliver(r.buf[r.start+4 : r.start+4+int(size)])
		r.start += 4 + int(size)
	}
	return nil
}

// deliver hands one frame to the stack.
func (s *Socket) deliver(frame []byte) {
	if len(frame) < header.EthernetMinimumSize {
		s.stats.rxMalformed.Add(1)
		return
	}
	s.mu.RLock()
	d, self := s.dispatcher, s.LinkAddress()
	s.mu.RUnlock()
	if d == nil {
		return
	}
	if dst := header.Ethernet(frame).DestinationAddress(); dst != self && dst[0]&1 == 0 {
		return // unicast to someone else
	}
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(frame)})
	defer pkt.DecRef()
	if !s.ParseHeader(pkt) {
		return
	}
	d.DeliverNetworkPacket(pkt.NetworkProtocolNumber, pkt)
}

// flushLoop finishes the frames the socket took only part of, waiting
// for the socket to drain, until the connection ends.
func (s *Socket) flushLoop(c *guestConn) {
	for range c.kick {
		err := c.rc.Write(func(fd uintptr) bool {
			s.wmu.Lock()
			defer s.wmu.Unlock()
			if c.closed {
				return true
			}
			switch err := flushPending(c); err {
			case nil:
				return true
			case syscall.EAGAIN:
				return false // wait for room
			default:
				s.stats.txErrors.Add(1)
				return true
			}
		})
		if err != nil {
			s.drop(c)
			return
		}
	}
}

// flushPending writes what it can of c's pending tail: nil when all of it
// is out, EAGAIN when some is left.
func flushPending(c *guestConn) error {
	for len(c.pending) > 0 {
		n, err := syscall.Write(c.fd, c.pending)
		switch {
		case err == syscall.EINTR:
			continue
		case err != nil:
			return err
		}
		c.pending = c.pending[n:]
	}
	return nil
}
