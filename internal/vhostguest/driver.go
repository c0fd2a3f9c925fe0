package vhostguest

import (
	"context"
	"encoding/binary"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/link/ethernet"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/masqnet/masq/internal/memguest"
	"github.com/masqnet/masq/link"
)

// Stats counts what the driver saw.
type Stats struct {
	// TSOToGuest counts frames the back-end wrote with a GSO type (TCP
	// segments larger than their MSS).
	TSOToGuest uint64
	// TSOFromGuest counts frames the guest sent with a GSO type.
	TSOFromGuest uint64
	// MergedToGuest counts frames that spanned several receive buffers.
	MergedToGuest uint64
	// FramesToGuest and FramesFromGuest count every frame.
	FramesToGuest, FramesFromGuest uint64
	// BadToGuest counts used entries the driver could not make a frame of.
	BadToGuest uint64
}

// Driver is the guest's virtio-net driver on a Frontend's rings, under an
// in-memory guest stack.
type Driver struct {
	f     *Frontend
	ch    *channel.Endpoint
	Guest *memguest.Guest

	tsoTo, tsoFrom, merged, to, from, bad atomic.Uint64

	txFree  []uint16 // transmit chain heads not in flight
	txUsed  uint16   // the next transmit used entry to reclaim
	txAvail uint16
}

// Stats returns what the driver counted.
func (d *Driver) Stats() Stats {
	return Stats{TSOToGuest: d.tsoTo.Load(), TSOFromGuest: d.tsoFrom.Load(), MergedToGuest: d.merged.Load(),
		FramesToGuest: d.to.Load(), FramesFromGuest: d.from.Load(), BadToGuest: d.bad.Load()}
}

// NewDriver runs a guest stack with the given MTU on f's queues (set up by
// Dial): its frames go out through the transmit queue and come in through
// the receive queue, with virtio-net headers and the offloads f
// negotiated. It stops when the test ends.
func NewDriver(tb testing.TB, f *Frontend, mtu uint32) *Driver {
	tb.Helper()
	ch := channel.New(1024, mtu+header.EthernetMinimumSize, memguest.MAC)
	if f.Features&(FeatNetHostTSO4|FeatNetHostTSO6) != 0 {
		ch.SupportedGSOKind = stack.HostGSOSupported
	}
	if f.Features&FeatNetGuestCsum != 0 {
		ch.LinkEPCapabilities |= stack.CapabilityRXChecksumOffload
	}
	d := &Driver{f: f, ch: ch}
	d.postRX()
	d.initTX()
	call, err := callFile(f.Queues[0].Call)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	d.Guest = memguest.NewOnLink(tb, ethernet.New(ch), func() {
		cancel()
		call.Close()
		wg.Wait()
		ch.Close()
	})
	wg.Go(func() { d.sendLoop(ctx) })
	wg.Go(func() { d.receiveLoop(call) })
	return d
}

// callFile wraps a dup of an eventfd for reads through Go's poller, so
// that closing it ends a blocked read.
func callFile(fd int) (*os.File, error) {
	dup, err := unix.Dup(fd)
	if err != nil {
		return nil, err
	}
	unix.SetNonblock(dup, true)
	return os.NewFile(uintptr(dup), "call"), nil
}

// postRX offers every receive buffer, one descriptor each.
func (d *Driver) postRX() {
	f, q := d.f, d.f.Queues[0]
	for i := range q.Size {
		f.SetDesc(q, i, q.BufAddr(i), uint32(q.BufSize), DescWrite, 0)
		f.SetAvailRing(q, i, uint16(i))
	}
	f.SetUsedEvent(q, 0)
	f.SetAvailIdx(q, uint16(q.Size))
}

// initTX makes each transmit chain two descriptors: the header, then the
// frame (descriptors 2i and 2i+1, each half the queue's heads).
func (d *Driver) initTX() {
	q := d.f.Queues[1]
	for i := 0; i+1 < q.Size; i += 2 {
		d.txFree = append(d.txFree, uint16(i))
	}
	// No interrupts for transmit completions: the driver reclaims them
	// when it needs a chain.
	d.f.SetUsedEvent(q, 0x8000)
}

// sendLoop writes the guest stack's frames into the transmit queue.
func (d *Driver) sendLoop(ctx context.Context) {
	for {
		pkt := d.ch.ReadContext(ctx)
		if pkt == nil {
			return
		}
		d.send(ctx, pkt)
		pkt.DecRef()
	}
}

// send writes one frame: it waits for a free chain, as a full queue
// makes a driver wait.
func (d *Driver) send(ctx context.Context, pkt *stack.PacketBuffer) {
	f, q := d.f, d.f.Queues[1]
	for len(d.txFree) == 0 {
		d.reclaimTX()
		if len(d.txFree) == 0 {
			if ctx.Err() != nil {
				return
			}
			time.Sleep(20 * time.Microsecond)
		}
	}
	head := d.txFree[len(d.txFree)-1]
	d.txFree = d.txFree[:len(d.txFree)-1]
	hb := f.Buf(q, int(head))
	clear(hb[:12])
	link.EncodeVirtioNetHeader(hb[:link.VirtioNetHeaderSize], pkt)
	if hb[1] != 0 {
		d.tsoFrom.Add(1)
	}
	n := 0
	for _, v := range pkt.AsSlices() {
		n += copy(f.Buf(q, int(head)+1)[n:], v)
	}
	hl := uint32(12)
	f.SetDesc(q, int(head), q.BufAddr(int(head)), hl, DescNext, head+1)
	f.SetDesc(q, int(head)+1, q.BufAddr(int(head)+1), uint32(n), 0, 0)
	f.SetAvailRing(q, int(d.txAvail), head)
	old := d.txAvail
	d.txAvail++
	f.SetAvailIdx(q, d.txAvail)
	d.from.Add(1)
	if f.needKick(q, old, d.txAvail) {
		f.Kick(q)
	}
}

// reclaimTX takes back the chains the device returned.
func (d *Driver) reclaimTX() {
	f, q := d.f, d.f.Queues[1]
	for end := f.UsedIdx(q); d.txUsed != end; d.txUsed++ {
		head, _ := f.Used(q, d.txUsed)
		d.txFree = append(d.txFree, head)
	}
}

// receiveLoop hands the frames the device wrote to the guest stack and
// offers their buffers again, until call is closed.
func (d *Driver) receiveLoop(call *os.File) {
	f, q := d.f, d.f.Queues[0]
	var b [8]byte
	var used, avail uint16 = 0, uint16(q.Size)
	for {
		for end := f.UsedIdx(q); used != end; {
			used = d.receive(used, end)
		}
		f.SetUsedEvent(q, used)
		if f.UsedIdx(q) != used {
			continue // more came while the event index moved
		}
		// Offer again every buffer taken since the last pass.
		old := avail
		for avail != used+uint16(q.Size) {
			slot := int(avail) % q.Size
			head, _ := f.Used(q, avail-uint16(q.Size))
			f.SetAvailRing(q, slot, head)
			avail++
		}
		if avail != old {
			f.SetAvailIdx(q, avail)
			if f.needKick(q, old, avail) {
				f.Kick(q)
			}
		}
		if _, err := call.Read(b[:]); err != nil {
			return
		}
	}
}

// receive makes one frame of the used entries from used (up to end),
// copying each buffer once into the stack's views, and returns the next
// entry.
func (d *Driver) receive(used, end uint16) uint16 {
	f, q := d.f, d.f.Queues[0]
	head, n := f.Used(q, used)
	used++
	if int(head) >= q.Size || int(n) > q.BufSize || n < 12 {
		d.bad.Add(1)
		return used
	}
	buf := f.Buf(q, int(head))
	hdr := buf[:12]
	nbufs := uint16(1)
	if f.Features&FeatNetMrgRxbuf != 0 {
		nbufs = binary.LittleEndian.Uint16(hdr[10:])
	}
	if hdr[1] != 0 {
		d.tsoTo.Add(1)
	}
	payload := buffer.MakeWithView(buffer.NewViewWithData(buf[12:n]))
	for i := uint16(1); i < nbufs; i++ {
		for spins := 0; used == end; spins++ {
			if spins > 1e6 { // the rest is published with the first: never
				d.bad.Add(1)
				payload.Release()
				return used
			}
			end = f.UsedIdx(q)
		}
		head, n := f.Used(q, used)
		used++
		if int(head) >= q.Size || int(n) > q.BufSize {
			d.bad.Add(1)
			payload.Release()
			return used
		}
		payload.Append(buffer.NewViewWithData(f.Buf(q, int(head))[:n]))
	}
	if nbufs > 1 {
		d.merged.Add(1)
	}
	d.to.Add(1)
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: payload})
	d.ch.InjectInbound(0, pkt)
	pkt.DecRef()
	return used
}
