package link

import (
	"encoding/binary"
	"slices"
	"sort"
	"syscall"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// maxSocketIovecs is how many iovecs one writev takes (IOV_MAX): a batch
// of more pieces is written by several, one after the other.
const maxSocketIovecs = 1024

// writeBatch is WritePackets' reusable state, so that a batch allocates
// nothing once the slices have grown to the largest batch seen.
type writeBatch struct {
	prefixes [][4]byte // each frame's length, big-endian
	bufs     [][]byte  // the stream to write: prefix, views, prefix, ...
	ends     []int     // where each frame ends in the stream (cumulative)
	iov      [maxSocketIovecs]unix.Iovec
}

// WritePackets implements stack.LinkEndpoint.WritePackets: the batch goes
// out in one writev where the iovecs allow. With no guest connected the
// frames are dropped (TxNoGuest). What the socket cannot take now is
// dropped (TxQueueFull) rather than waited for: blocking here would stall
// the stack's goroutines behind a paused or slow guest. A frame cut short
// is finished from a copy of its tail (see Socket), and the frames after
// it are dropped until it is.
func (s *Socket) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	list := pkts.AsSlice()
	s.wmu.Lock()
	defer s.wmu.Unlock()
	c := s.cur
	if c == nil || c.closed {
		s.stats.txNoGuest.Add(uint64(len(list)))
		return len(list), nil
	}
	if len(c.pending) > 0 {
		if err := flushPending(c); err != nil {
			return 0, s.writeFailed(c, err, len(list))
		}
	}
	b := &s.batch
	b.build(list)
	done, errno := b.write(c.fd)
	defer clear(b.bufs)                     // keep no packet's memory past the call
	sent := sort.SearchInts(b.ends, done+1) // frames wholly written
	if sent < len(list) && done > b.start(sent) {
		// Frame sent was cut short: keep its tail for the flusher.
		c.tail = b.appendRange(c.tail[:0], done, b.ends[sent])
		c.pending = c.tail
		select {
		case c.kick <- struct{}{}:
		default: // already awake
		}
		sent++
	}
	if sent == len(list) {
		return sent, nil
	}
	if err := s.writeFailed(c, errno, len(list)-sent); sent == 0 {
		return 0, err
	}
	return sent, nil
}

// writeFailed counts n frames not written because of err and returns
// the error for the stack. An error other than EAGAIN ends the
// connection: the guest is gone.
func (s *Socket) writeFailed(c *guestConn, err error, n int) tcpip.Error {
	if err == syscall.EAGAIN {
		s.stats.txQueueFull.Add(uint64(n))
		return &tcpip.ErrWouldBlock{}
	}
	s.stats.txErrors.Add(uint64(n))
	if !c.closed {
		s.log.Info("guest disconnected", "remote", remote(c.conn), "err", err)
	}
	s.dropLocked(c)
	return &tcpip.ErrClosedForSend{}
}

// build lays pkts out as one stream of length prefixes and the packets'
// views, in place.
func (b *writeBatch) build(pkts []*stack.PacketBuffer) {
	b.bufs, b.ends = b.bufs[:0], b.ends[:0]
	b.prefixes = slices.Grow(b.prefixes[:0], len(pkts))[:len(pkts)]
	total := 0
	for i, pkt := range pkts {
		size := pkt.Size()
		binary.BigEndian.PutUint32(b.prefixes[i][:], uint32(size))
		b.bufs = append(b.bufs, b.prefixes[i][:])
		// The packet's views, walked in place (AsSlices allocates);
		// offset skips what was consumed from the front.
		views, offset := pkt.AsViewList()
		for v := views.Front(); v != nil; v = v.Next() {
			p := v.AsSlice()
			if offset >= len(p) {
				offset -= len(p)
				continue
			}
			b.bufs = append(b.bufs, p[offset:])
			offset = 0
		}
		total += 4 + size
		b.ends = append(b.ends, total)
	}
}

// start returns where frame i begins in the stream.
func (b *writeBatch) start(i int) int {
	if i == 0 {
		return 0
	}
	return b.ends[i-1]
}

// write writes the stream to fd, IOV_MAX pieces per writev, until it is
// all out or fd fails (EAGAIN: full). It returns the bytes written.
func (b *writeBatch) write(fd int) (done int, errno syscall.Errno) {
	i, off := 0, 0 // the next byte is b.bufs[i][off]
	for i < len(b.bufs) {
		k := 0
		for j := i; j < len(b.bufs) && k < len(b.iov); j++ {
			p := b.bufs[j]
			if j == i {
				p = p[off:]
			}
			b.iov[k].Base = &p[0]
			b.iov[k].SetLen(len(p))
			k++
		}
		n, errno := writev(fd, b.iov[:k])
		switch errno {
		case 0:
		case syscall.EINTR:
			continue
		default:
			return done, errno
		}
		done += int(n)
		for left := int(n); left > 0; {
			if rest := len(b.bufs[i]) - off; left < rest {
				off += left
				left = 0
			} else {
				left -= rest
				i, off = i+1, 0
			}
		}
	}
	return done, 0
}

// appendRange appends the stream's bytes from..to to dst.
func (b *writeBatch) appendRange(dst []byte, from, to int) []byte {
	at := 0
	for _, p := range b.bufs {
		lo, hi := max(from-at, 0), min(to-at, len(p))
		if lo < hi {
			dst = append(dst, p[lo:hi]...)
		}
		if at += len(p); at >= to {
			break
		}
	}
	return dst
}
