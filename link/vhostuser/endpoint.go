package vhostuser

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/masqnet/masq/link"
)

// Endpoint is the vhost-user link: a gVisor link endpoint whose guest is
// the virtio-net device a vhost-user front-end (QEMU) drives through a
// unix socket masq listens on.
//
// One front-end is served at a time: a connection made while another is
// served waits, unanswered, until that one ends (QEMU restarting connects
// before masq has read the old connection's end). When the front-end goes
// away, or resets the device (a guest reboot), the Endpoint serves the
// next session without restarting anything; frames the stack writes
// while no receive queue runs are dropped and counted (ToGuestNoGuest).
type Endpoint struct {
	link.Ethernet // MTU, link address, framing
	// BurstNotifier's function is called after each round of the
	// transmit queue (at most its size in frames).
	link.BurstNotifier

	ln     net.Listener
	log    *slog.Logger
	closed func(error)
	stats  counters
	// rxVerified says whether the frame being delivered has had its
	// checksums verified (by the guest or by link.CheckFrame): see
	// Capabilities. Set before each delivery by the one goroutine that
	// delivers, the transmit queue's worker.
	rxVerified atomic.Bool

	mu         sync.RWMutex
	dispatcher stack.NetworkDispatcher // guarded by mu
	dev        *device                 // guarded by mu: the session served, or nil
	accepting  bool                    // guarded by mu
	closing    bool                    // guarded by mu

	closeOnce sync.Once
	wg        sync.WaitGroup
}

var _ stack.LinkEndpoint = (*Endpoint)(nil)
var _ stack.GSOEndpoint = (*Endpoint)(nil)

// Config configures Listen.
type Config struct {
	// Path is the unix socket file to listen on.
	Path string
	// Mode is the socket file's permission bits; 0 means 0600.
	Mode fs.FileMode
	// MTU is the link's MTU.
	MTU uint32
	// Logger receives a line per session and per protocol error. Nil
	// means slog.Default().
	Logger *slog.Logger
	// Closed, if not nil, is called when the listener fails for good. A
	// front-end going away is not a failure.
	Closed func(error)
}

// Listen listens on cfg.Path, replacing a stale socket file of that path
// (not a file of another type), and returns an Endpoint that serves
// front-ends once attached to a stack. Close removes the file.
func Listen(cfg Config) (*Endpoint, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	ln, err := link.ListenUnix(cfg.Path, cfg.Mode)
	if err != nil {
		return nil, err
	}
	e := &Endpoint{ln: ln, log: log, closed: cfg.Closed}
	e.SetMTU(cfg.MTU)
	return e, nil
}

// Addr returns the address the Endpoint listens on.
func (e *Endpoint) Addr() net.Addr { return e.ln.Addr() }

// Capabilities implements stack.LinkEndpoint.Capabilities. Receive
// checksum offload is declared frame by frame, as on the vnet tap link:
// the guest's TSO segments carry partial checksums the stack must not
// verify, while a frame nothing verified must be (see link.Vnet).
func (e *Endpoint) Capabilities() stack.LinkEndpointCapabilities {
	caps := stack.CapabilityResolutionRequired
	if e.rxVerified.Load() {
		caps |= stack.CapabilityRXChecksumOffload
	}
	return caps
}

// GSOMaxSize implements stack.GSOEndpoint.GSOMaxSize.
func (e *Endpoint) GSOMaxSize() uint32 { return link.VirtioNetGSOMaxSize }

// SupportedGSO implements stack.GSOEndpoint.SupportedGSO: host GSO (TCP
// segments of up to 64 KiB with partial checksums) when the session
// served negotiated the guest's TSO and checksum offloads. gVisor asks
// once per TCP connection.
func (e *Endpoint) SupportedGSO() stack.SupportedGSO {
	e.mu.RLock()
	d := e.dev
	e.mu.RUnlock()
	if d != nil && d.guestTSO() {
		return stack.HostGSOSupported
	}
	return stack.GSONotSupported
}

// Attach implements stack.LinkEndpoint.Attach: a non-nil dispatcher
// starts serving front-ends; nil (the stack removing its NIC) closes the
// Endpoint as Close does, so that Wait returns.
func (e *Endpoint) Attach(d stack.NetworkDispatcher) {
	e.mu.Lock()
	e.dispatcher = d
	start := d != nil && !e.accepting && !e.closing
	e.accepting = e.accepting || start
	e.mu.Unlock()
	switch {
	case start:
		e.wg.Go(e.acceptLoop)
	case d == nil:
		e.Close()
	}
}

// IsAttached implements stack.LinkEndpoint.IsAttached.
func (e *Endpoint) IsAttached() bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.dispatcher != nil
}

// Wait implements stack.LinkEndpoint.Wait.
func (e *Endpoint) Wait() { e.wg.Wait() }

// Close implements stack.LinkEndpoint.Close: it stops listening (removing
// the socket file), ends the session served, unmapping guest memory, and
// waits for the Endpoint's goroutines. It may be called more than once.
func (e *Endpoint) Close() {
	e.closeOnce.Do(func() {
		e.mu.Lock()
		e.closing = true
		d := e.dev
		e.mu.Unlock()
		e.ln.Close()
		if d != nil {
			d.conn.c.Close() // its serve loop ends the session
		}
		e.wg.Wait()
	})
}

// SetOnCloseAction implements stack.LinkEndpoint.SetOnCloseAction.
func (e *Endpoint) SetOnCloseAction(func()) {}

// acceptLoop serves front-ends, one session at a time, until the
// listener is closed.
func (e *Endpoint) acceptLoop() {
	for {
		c, err := e.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				e.log.Error("vhost-user: accept failed", "err", err)
				if e.closed != nil {
					e.closed(fmt.Errorf("accept vhost-user front-end: %w", err))
				}
			}
			return
		}
		e.serve(c.(*net.UnixConn))
	}
}

// serve runs one session until the front-end goes away or breaks the
// protocol, then releases everything it held.
func (e *Endpoint) serve(c *net.UnixConn) {
	d := newDevice(e, newConn(c))
	e.mu.Lock()
	if e.closing {
		e.mu.Unlock()
		c.Close()
		return
	}
	e.dev = d
	e.mu.Unlock()
	e.stats.sessions.Add(1)
	e.log.Info("vhost-user front-end connected")
	err := d.serve()
	e.mu.Lock()
	e.dev = nil
	e.mu.Unlock()
	d.release()
	c.Close()
	switch {
	case err == nil:
		e.log.Info("vhost-user front-end disconnected")
	default:
		e.stats.sessionErrors.Add(1)
		e.log.Warn("vhost-user session ended", "err", err)
	}
}

// WritePackets implements stack.LinkEndpoint.WritePackets: each frame
// goes into the guest's receive buffers, the batch's buffers are returned
// together and the guest notified once, if it asked to be. A frame with
// no buffer to take it is dropped and counted, as a NIC drops it.
func (e *Endpoint) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	list := pkts.AsSlice()
	e.mu.RLock()
	d := e.dev
	e.mu.RUnlock()
	if d == nil || !d.writePackets(list) {
		e.stats.toGuestNoGuest.Add(uint64(len(list)))
	}
	return len(list), nil
}

// deliver hands one frame from the guest to the stack: frame, and tail
// when the frame is longer than one view holds (nil otherwise), which it
// takes ownership of; flags are its virtio-net header's.
func (e *Endpoint) deliver(flags byte, frame, tail *buffer.View) {
	e.mu.RLock()
	d, self := e.dispatcher, e.LinkAddress()
	e.mu.RUnlock()
	b := frame.AsSlice()
	if d == nil {
		release(frame, tail)
		return
	}
	if dst := header.Ethernet(b).DestinationAddress(); dst != self && dst[0]&1 == 0 {
		release(frame, tail) // unicast to someone else
		return
	}
	verified := flags&(link.VirtioNetFlagNeedsCsum|link.VirtioNetFlagDataValid) != 0
	if !verified {
		ok := tail == nil // longer than a view: a TSO segment, which vouches
		if ok {
			ok, verified = link.CheckFrame(b)
		}
		if !ok {
			e.stats.fromGuestBadChecksum.Add(1)
			release(frame, tail)
			return
		}
	}
	e.rxVerified.Store(verified)
	payload := buffer.MakeWithView(frame)
	if tail != nil {
		payload.Append(tail)
	}
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: payload})
	defer pkt.DecRef()
	if !e.ParseHeader(pkt) {
		return
	}
	d.DeliverNetworkPacket(pkt.NetworkProtocolNumber, pkt)
}

// release releases the views that are not nil.
func release(views ...*buffer.View) {
	for _, v := range views {
		if v != nil {
			v.Release()
		}
	}
}
