package link

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Vnet is a link endpoint for a tap opened with IFF_VNET_HDR and TSO
// offloads (TUNSETOFFLOAD CSUM|TSO4|TSO6): every frame carries a
// virtio-net header, and TCP moves in segments of up to 64 KiB each way,
// one system call per segment instead of one per MTU-sized frame.
// gVisor's fdbased endpoint offers this only for packet sockets, not taps.
//
// Receiving, the guest's kernel hands over TSO segments with partial
// checksums (VIRTIO_NET_HDR_F_NEEDS_CSUM): they are delivered as
// checksum-validated, the guest being the only writer of the tap. Sending,
// gVisor's host GSO builds large TCP segments and the tap's kernel side
// segments (or hands them whole) to the guest.
type Vnet struct {
	ethernet // MTU, link address, framing

	fd int
	// file is a duplicate of fd registered with the Go runtime's poller:
	// the reader waits for the tap there, parked, not in a blocking
	// poll(2) that holds its thread. A frame then wakes no other thread:
	// the goroutines it readies (gVisor's TCP processor, a flow's copy
	// loop) run on the reader's own P at once, where a reader blocked in
	// poll left them queued behind a thread the runtime had to wake or
	// hand the P to.
	file     *os.File
	rc       syscall.RawConn
	stopping atomic.Bool
	closed   func(error)
	// rxVerified says whether the frame being delivered has had its
	// checksums verified (by the guest's kernel or by checkFrame): see
	// Capabilities. Set by the reader before each delivery.
	rxVerified atomic.Bool

	// synAckMu is held while a frame is delivered and while a TCP SYN-ACK
	// is written: see writeSynAck.
	synAckMu sync.Mutex
	// BurstNotifier's function is called by the reader at the end of
	// each burst.
	BurstNotifier

	closeOnce sync.Once
	stats     counters
	frames    sync.Pool // *[]byte of maxFrame: see writeCopy

	mu         sync.RWMutex
	dispatcher stack.NetworkDispatcher // guarded by mu
	wg         sync.WaitGroup
}

var _ stack.LinkEndpoint = (*Vnet)(nil)
var _ stack.GSOEndpoint = (*Vnet)(nil)

// virtio-net header (linux/virtio_net.h), without num_buffers.
const (
	vnetHdrSize       = header.VirtioNetHeaderSize // 10: flags, gso_type, hdr_len, gso_size, csum_start, csum_offset
	vnetFlagNeedsCsum = 1                          // VIRTIO_NET_HDR_F_NEEDS_CSUM: checksum partial, to be completed
	vnetFlagDataValid = 2                          // VIRTIO_NET_HDR_F_DATA_VALID: checksum verified
	vnetGSONone       = 0
	vnetGSOTCPv4      = 1
	vnetGSOTCPv6      = 4
)

// vnetGSOMaxSize is the largest TCP segment handed to the tap: what fits a
// 64 KiB frame with its headers.
const vnetGSOMaxSize = 1<<16 - 1 - header.EthernetMinimumSize - header.IPv6MinimumSize - header.TCPMinimumSize

// maxFrame is the largest frame read: a 64 KiB TSO segment with its
// Ethernet header and some slack.
const maxFrame = 1<<16 + header.EthernetMinimumSize + 256

// NewVnet returns a link endpoint for fd, a tap opened with
// IFF_VNET_HDR whose offloads (TUNSETOFFLOAD) include TSO. It does not take
// ownership of fd, which must stay open until the Stack using the link has
// been closed. closed, if not nil, is called when reading fd fails.
func NewVnet(fd int, mtu uint32, closed func(error)) (*Vnet, error) {
	if err := unix.SetNonblock(fd, true); err != nil {
		return nil, fmt.Errorf("tap fd %d: %w", fd, err)
	}
	// A duplicate, so that closing the poller's file leaves fd to its
	// owner; it shares fd's open file (and its O_NONBLOCK).
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("tap fd %d: dup: %w", fd, err)
	}
	file := os.NewFile(uintptr(dup), "tap")
	rc, err := file.SyscallConn()
	if err != nil {
		file.Close()
		return nil, fmt.Errorf("tap fd %d: %w", fd, err)
	}
	l := &Vnet{fd: fd, file: file, rc: rc, closed: closed}
	l.frames.New = func() any { b := make([]byte, maxFrame); return &b }
	l.mtu.Store(mtu)
	return l, nil
}

// Capabilities implements stack.LinkEndpoint.Capabilities. Receive
// checksum offload is declared frame by frame: TSO segments carry partial
// checksums (the guest's kernel left them to a NIC), which the stack must
// not verify, while a frame nothing verified (a fragment, say) must be.
// gVisor's NIC reads the link's capabilities for each frame it is handed,
// on the goroutine that hands it over (the reader), and uses the receive
// offload bit for nothing else; the other bits never change.
func (l *Vnet) Capabilities() stack.LinkEndpointCapabilities {
	caps := stack.CapabilityResolutionRequired
	if l.rxVerified.Load() {
		caps |= stack.CapabilityRXChecksumOffload
	}
	return caps
}

// GSOMaxSize implements stack.GSOEndpoint.GSOMaxSize.
func (l *Vnet) GSOMaxSize() uint32 { return vnetGSOMaxSize }

// SupportedGSO implements stack.GSOEndpoint.SupportedGSO.
func (l *Vnet) SupportedGSO() stack.SupportedGSO { return stack.HostGSOSupported }

// Attach implements stack.LinkEndpoint.Attach: a non-nil dispatcher starts
// the reader, nil stops it and waits for it.
func (l *Vnet) Attach(d stack.NetworkDispatcher) {
	l.mu.Lock()
	old := l.dispatcher
	l.dispatcher = d
	l.mu.Unlock()
	switch {
	case d != nil && old == nil:
		l.stopping.Store(false)
		l.file.SetReadDeadline(time.Time{})
		l.wg.Go(l.readLoop)
	case d == nil && old != nil:
		l.stopReader()
	}
}

// IsAttached implements stack.LinkEndpoint.IsAttached.
func (l *Vnet) IsAttached() bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.dispatcher != nil
}

// Wait implements stack.LinkEndpoint.Wait.
func (l *Vnet) Wait() { l.wg.Wait() }

// Close implements stack.LinkEndpoint.Close: it stops the reader.
func (l *Vnet) Close() {
	l.closeOnce.Do(func() {
		l.stopReader()
		l.file.Close()
	})
}

// SetOnCloseAction implements stack.LinkEndpoint.SetOnCloseAction.
func (l *Vnet) SetOnCloseAction(func()) {}

// stopReader wakes the reader for good and waits for it.
func (l *Vnet) stopReader() {
	l.stopping.Store(true)                  // a guest that keeps the tap busy never lets the reader wait
	l.file.SetReadDeadline(time.Unix(1, 0)) // wakes a waiting reader
	l.wg.Wait()
}

// WritePackets implements stack.LinkEndpoint.WritePackets. A packet the
// tap cannot take now (its queue is full) is dropped, as a NIC would.
func (l *Vnet) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	n := 0
	for _, pkt := range pkts.AsSlice() {
		write := l.writePacket
		if isSynAck(pkt) {
			write = l.writeSynAck
		}
		if err := write(pkt); err != nil {
			if n == 0 {
				return 0, err
			}
			break
		}
		n++
	}
	return n, nil
}

// writeSynAck writes a TCP SYN-ACK while no frame is being delivered.
//
// gVisor writes the SYN-ACK of a connection the NAT accepts holding the
// new endpoint's lock, and a tap write runs the guest kernel's receive
// path inline: the guest's ACK and first data are often on the tap before
// the write returns. Delivered then, they find the endpoint locked, and
// gVisor's TCP processor goroutine re-queues the endpoint and retries
// without ever sleeping until the lock is free: on two busy cores it spun
// for most of a millisecond per connection (80 % of masq's CPU time in
// TCP CRR), keeping the lock holder itself off the CPU. Holding synAckMu
// over the write, and the reader over each delivery, makes the guest's
// answer wait until the write has returned, when the lock is free within
// instructions.
func (l *Vnet) writeSynAck(pkt *stack.PacketBuffer) tcpip.Error {
	l.synAckMu.Lock()
	defer l.synAckMu.Unlock()
	return l.writePacket(pkt)
}

// isSynAck reports whether pkt is a TCP SYN-ACK.
func isSynAck(pkt *stack.PacketBuffer) bool {
	if pkt.TransportProtocolNumber != header.TCPProtocolNumber {
		return false
	}
	th := pkt.TransportHeader().Slice()
	const synAck = header.TCPFlagSyn | header.TCPFlagAck
	return len(th) >= header.TCPMinimumSize && header.TCP(th).Flags()&synAck == synAck
}

// maxIovecs is how many iovecs writePacket passes to one writev: the
// virtio-net header and up to maxIovecs-1 views of the packet, in place. A
// packet of more views (gVisor merges many small writes into one TSO
// segment of hundreds of views: a flow written 100 bytes at a time) is
// copied into one buffer instead: a 64 KiB copy costs less than the
// iovec array the kernel would copy in, and the array stays on the stack.
const maxIovecs = 64

// writePacket writes one frame with its virtio-net header.
func (l *Vnet) writePacket(pkt *stack.PacketBuffer) tcpip.Error {
	var hdr [vnetHdrSize]byte
	encodeVnetHdr(hdr[:], pkt)
	var iov [maxIovecs]unix.Iovec
	iov[0].Base = &hdr[0]
	iov[0].SetLen(vnetHdrSize)
	k := 1
	// The packet's views, walked in place (AsSlices allocates a slice of
	// them per packet); offset skips what was consumed from the front.
	views, offset := pkt.AsViewList()
	for v := views.Front(); v != nil; v = v.Next() {
		b := v.AsSlice()
		if offset >= len(b) {
			offset -= len(b)
			continue
		}
		b, offset = b[offset:], 0
		if k == len(iov) {
			return l.writeCopy(pkt)
		}
		iov[k].Base = &b[0]
		iov[k].SetLen(len(b))
		k++
	}
	return l.writev(iov[:k])
}

// writeCopy writes pkt, copied into one pooled buffer, after its
// virtio-net header.
func (l *Vnet) writeCopy(pkt *stack.PacketBuffer) tcpip.Error {
	var hdr [vnetHdrSize]byte
	encodeVnetHdr(hdr[:], pkt)
	size := pkt.Size()
	bp := l.frames.Get().(*[]byte)
	defer l.frames.Put(bp)
	if cap(*bp) < size {
		*bp = make([]byte, size) // larger than any frame the MTU allows
	}
	b := (*bp)[:size]
	views, offset := pkt.AsViewList()
	at := 0
	for v := views.Front(); v != nil; v = v.Next() {
		s := v.AsSlice()
		if offset >= len(s) {
			offset -= len(s)
			continue
		}
		at += copy(b[at:], s[offset:])
		offset = 0
	}
	var iov [2]unix.Iovec
	iov[0].Base, iov[1].Base = &hdr[0], &b[0]
	iov[0].SetLen(vnetHdrSize)
	iov[1].SetLen(at)
	return l.writev(iov[:])
}

// writev writes iov as one frame, counting a frame the tap did not take.
func (l *Vnet) writev(iov []unix.Iovec) tcpip.Error {
	for {
		_, errno := writev(l.fd, iov)
		switch errno {
		case 0:
			return nil
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			l.stats.txQueueFull.Add(1)
			return &tcpip.ErrWouldBlock{}
		}
		l.stats.txErrors.Add(1)
		return tcpip.TranslateErrno(errno)
	}
}

// encodeVnetHdr fills hdr for pkt from its GSO options.
func encodeVnetHdr(hdr []byte, pkt *stack.PacketBuffer) {
	gso := pkt.GSOOptions
	if gso.Type == stack.GSONone {
		return
	}
	binary.LittleEndian.PutUint16(hdr[2:], uint16(pkt.HeaderSize())) // hdr_len
	if gso.NeedsCsum {
		hdr[0] = vnetFlagNeedsCsum
		binary.LittleEndian.PutUint16(hdr[6:], header.EthernetMinimumSize+gso.L3HdrLen) // csum_start
		binary.LittleEndian.PutUint16(hdr[8:], gso.CsumOffset)                          // csum_offset
	}
	if uint16(pkt.Data().Size()) > gso.MSS {
		switch gso.Type {
		case stack.GSOTCPv4:
			hdr[1] = vnetGSOTCPv4
		case stack.GSOTCPv6:
			hdr[1] = vnetGSOTCPv6
		}
		binary.LittleEndian.PutUint16(hdr[4:], gso.MSS) // gso_size
	}
}

// readLoop delivers the tap's frames until stopped or the tap fails.
func (l *Vnet) readLoop() {
	buf := make([]byte, vnetHdrSize+maxFrame)
	var (
		n      int
		rerr   error
		frames int // delivered since the burst's end was last called
		bytes  int // of those frames
	)
	// read runs on the poller's behalf: false (EAGAIN) parks the reader
	// until the tap is readable; the burst ends first. Bound once: no
	// allocation per frame.
	read := func(fd uintptr) bool {
		for {
			n, rerr = unix.Read(int(fd), buf)
			switch {
			case rerr == unix.EINTR:
				continue
			case rerr == unix.EAGAIN:
				if frames > 0 {
					frames, bytes = 0, 0
					l.EndBurst()
				}
				return false
			}
			return true
		}
	}
	for !l.stopping.Load() {
		if err := l.rc.Read(read); err != nil {
			if !l.stopping.Load() {
				l.fail(err)
			}
			return
		}
		switch {
		case rerr != nil:
			l.fail(rerr)
			return
		case n == 0:
			l.fail(errors.New("tap closed"))
			return
		}
		l.synAckMu.Lock() // see writeSynAck
		l.deliver(buf[:n])
		l.synAckMu.Unlock()
		frames, bytes = frames+1, bytes+n
		if frames >= MaxBurstFrames || bytes >= MaxBurstBytes {
			frames, bytes = 0, 0
			l.EndBurst()
		}
	}
}

// fail reports a dead tap.
func (l *Vnet) fail(err error) {
	if l.closed != nil {
		l.closed(fmt.Errorf("read tap: %w", err))
	}
}

// deliver hands one frame (virtio-net header first) to the stack.
func (l *Vnet) deliver(b []byte) {
	if len(b) < vnetHdrSize+header.EthernetMinimumSize {
		l.stats.rxMalformed.Add(1)
		return
	}
	frame := b[vnetHdrSize:]
	eth := header.Ethernet(frame)
	l.mu.RLock()
	d, self := l.dispatcher, l.LinkAddress()
	l.mu.RUnlock()
	if d == nil {
		return
	}
	if dst := eth.DestinationAddress(); dst != self && dst[0]&1 == 0 {
		return // unicast to someone else
	}
	verified := b[0]&(vnetFlagNeedsCsum|vnetFlagDataValid) != 0
	if !verified {
		var ok bool
		if ok, verified = checkFrame(frame); !ok {
			l.stats.rxBadChecksum.Add(1)
			return
		}
	}
	l.rxVerified.Store(verified)
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(frame)})
	defer pkt.DecRef()
	if !l.ParseHeader(pkt) {
		return
	}
	d.DeliverNetworkPacket(pkt.NetworkProtocolNumber, pkt)
}
