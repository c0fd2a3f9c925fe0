package nat

import (
	"errors"
	"net/netip"
	"sync"
	"syscall"
)

// udpBatch holds the guest datagrams of one burst of frames that go out
// through one flow to one destination, of one size, and sends them in one
// GSOConn.WriteGSO when the burst ends (Config.BurstEnd), when a datagram
// that does not fit arrives, or when it is full. One send of up to 64
// datagrams costs the pod about what one datagram did (an iperf3 stream
// at 1 Gbit/s is 85,000 datagrams a second, one system call each before),
// and the kernel still puts each on the wire as the guest sent it.
//
// Only the link's reader adds to it, but a burst's end and the NAT's
// shutdown may come from elsewhere: mu guards it all.
type udpBatch struct {
	mu    sync.Mutex
	flow  *datagramFlow // nil: empty
	dst   netip.AddrPort
	ttl   uint8
	df    bool
	size  int // of every datagram; a shorter one ends the batch
	count int
	buf   []byte // the datagrams back to back; cap MaxGSOBytes
	// quotes holds each datagram's quote (quoteLen bytes of it) for the
	// "unreachable" its resend may draw (see flushLocked).
	quotes   [MaxGSOSegments][maxQuote]byte
	quoteLen [MaxGSOSegments]uint8
}

func newUDPBatch() *udpBatch { return &udpBatch{buf: make([]byte, 0, MaxGSOBytes)} }

// add queues payload (copied) for f to send to dst with the guest's ttl
// and df, flushing what it held first when payload cannot join it.
func (b *udpBatch) add(f *datagramFlow, payload []byte, dst netip.AddrPort, ttl uint8, df bool, quote []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.flow != nil && !b.fitsLocked(f, len(payload), dst, ttl, df) {
		b.flushLocked()
	}
	if b.flow == nil {
		b.flow, b.dst, b.ttl, b.df, b.size = f, dst, ttl, df, len(payload)
	}
	b.quoteLen[b.count] = uint8(copy(b.quotes[b.count][:], quote))
	b.buf = append(b.buf, payload...)
	b.count++
	if b.count == MaxGSOSegments || len(payload) < b.size || len(b.buf)+b.size > MaxGSOBytes {
		b.flushLocked() // full, or ended by a shorter datagram
	}
}

// fitsLocked reports whether a datagram of n bytes from f to dst with ttl
// and df can join the batch.
func (b *udpBatch) fitsLocked(f *datagramFlow, n int, dst netip.AddrPort, ttl uint8, df bool) bool {
	return f == b.flow && dst == b.dst && ttl == b.ttl && df == b.df && n <= b.size
}

// flush sends what the batch holds.
func (b *udpBatch) flush() {
	b.mu.Lock()
	b.flushLocked()
	b.mu.Unlock()
}

// flushFlow sends what the batch holds when it holds f's datagrams: f is
// about to send one past the batch, which must not overtake them.
func (b *udpBatch) flushFlow(f *datagramFlow) {
	b.mu.Lock()
	if b.flow == f {
		b.flushLocked()
	}
	b.mu.Unlock()
}

// flushLocked sends the batch: one datagram on its own, more in one
// WriteGSO. When that fails (GSO refused: a path MTU below the size, an
// old kernel; or an error the socket had pending) it sends them one by
// one as unbatched datagrams go, each with its own error handling, and
// answers the guest "unreachable" for those the pod has no route for; a
// refusal of GSO itself stops batching for the flow.
func (b *udpBatch) flushLocked() {
	f := b.flow
	if f == nil {
		return
	}
	var err error
	if b.count > 1 {
		var ttl uint8 // the guest's less one, as datagramFlow.write sends
		if b.ttl > 1 {
			ttl = b.ttl - 1
		}
		err = f.gso.WriteGSO(b.buf, b.size, b.dst, ttl, b.df)
		if gsoRefused(err) {
			f.noGSO.Store(true)
		}
	}
	if b.count == 1 || err != nil {
		for i, off := 0, 0; i < b.count; i, off = i+1, off+b.size {
			end := min(off+b.size, len(b.buf))
			if err := f.sendNow(b.buf[off:end], b.dst, b.ttl, b.df); isUnroutable(err) {
				f.env.errs.netUnreachable(f.src.Addr(), b.quotes[i][:b.quoteLen[i]])
			}
		}
	}
	b.flow, b.count, b.buf = nil, 0, b.buf[:0]
}

// gsoRefused reports whether err is the kernel turning UDP segmentation
// down rather than a send failing: EINVAL for a segment the path MTU
// cannot carry whole, EIO or ENOPROTOOPT where the kernel or device cannot
// segment at all.
func gsoRefused(err error) bool {
	return errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.EIO) || errors.Is(err, syscall.ENOPROTOOPT) ||
		errors.Is(err, syscall.EOPNOTSUPP)
}

// isUnroutable reports whether a send failed for want of a route.
func isUnroutable(err error) bool {
	return errors.Is(err, syscall.ENETUNREACH) || errors.Is(err, syscall.EHOSTUNREACH)
}
