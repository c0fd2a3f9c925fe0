package capture

import (
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// MinMaxBytes is the smallest size cap a capture accepts: room for the
// file header and a few frames.
const MinMaxBytes = 4096

// Buffering of a capture's frames between the frame path and the file.
const (
	// bufSize is one buffer: up to 15 of the largest frames (a 64 KiB TSO
	// segment) or ~690 of 1500 bytes, written to the file in one call.
	bufSize = 1 << 20
	// bufCount buffers per capture (4 MiB): while one is written, frames
	// go into the others; a burst that fills them all while the file is
	// slow is dropped and counted, never waited for.
	bufCount = 4
	// flushInterval bounds how long a frame stays in a buffer that is
	// not full: a capture file being read while it grows (tcpdump -r)
	// is at most this far behind.
	flushInterval = time.Second
)

// Options configure a capture.
type Options struct {
	// MaxBytes caps the capture's output, file header included; it must
	// be at least MinMaxBytes. A frame that would go beyond it ends the
	// capture: frames after it are not recorded, and the capture logs
	// one line. The output never holds a partial record.
	MaxBytes int64

	// Logger receives the capture's events (the cap reached, a failed
	// write): one line each. Nil means slog.Default().
	Logger *slog.Logger
}

// Stats counts what a capture recorded.
type Stats struct {
	// Frames counts the frames recorded.
	Frames uint64
	// Dropped counts frames not recorded because every buffer was full,
	// waiting for a slow output.
	Dropped uint64
	// Bytes is the size of the output, file header and records, when
	// every write succeeded (else what was meant to be written).
	Bytes int64
	// Capped reports that the size cap was reached: frames after it were
	// not recorded (nor counted).
	Capped bool
}

// Capture is one capture running on an Endpoint: every frame, each way,
// recorded into a pcap stream written to an io.Writer by a goroutine of
// its own. Stop ends it.
type Capture struct {
	ep  *Endpoint
	out io.Writer
	log *slog.Logger
	max int64

	mu      sync.Mutex
	cur     []byte   // the buffer frames go into; nil when none is free
	queue   [][]byte // full buffers for the writer, oldest first
	free    [][]byte // empty buffers
	size    int64    // bytes accepted: file header and records
	frames  uint64
	dropped uint64
	stopped bool // by Stop or a failed write: record nothing more
	capped  bool // the next frame would have gone beyond max

	kick     chan struct{} // buffers are queued; capacity 1
	cappedc  chan struct{} // closed when capped is set
	stopc    chan struct{} // closed by Stop
	done     chan struct{} // closed when the writer goroutine has returned
	stopOnce sync.Once

	// The writer goroutine's alone (read by Stop after done).
	batch        [][]byte // buffers being written
	err          error    // the first write error
	cappedLogged bool
}

// Start starts a capture on e into out, beginning with the pcap file
// header; frames go to out from a goroutine of the capture's, in order,
// until Stop. out is not closed.
func (e *Endpoint) Start(out io.Writer, opts Options) (*Capture, error) {
	if opts.MaxBytes < MinMaxBytes {
		return nil, fmt.Errorf("capture size cap %d bytes: must be at least %d", opts.MaxBytes, MinMaxBytes)
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	c := &Capture{ep: e, out: out, log: log, max: opts.MaxBytes,
		queue: make([][]byte, 0, bufCount), free: make([][]byte, 0, bufCount), batch: make([][]byte, 0, bufCount),
		kick: make(chan struct{}, 1), cappedc: make(chan struct{}), stopc: make(chan struct{}), done: make(chan struct{})}
	for range bufCount {
		c.free = append(c.free, make([]byte, 0, bufSize))
	}
	c.rotate()
	c.cur = appendFileHeader(c.cur)
	c.size = FileHeaderLen
	go c.run()
	e.add(c)
	return c, nil
}

// Capped is closed when the capture reached its size cap.
func (c *Capture) Capped() <-chan struct{} { return c.cappedc }

// Stop ends the capture: no frame is recorded after it returns, and every
// frame recorded is written to the output. It returns the capture's counts
// and the first error writing the output, if any. Stop may be called
// more than once.
func (c *Capture) Stop() (Stats, error) {
	c.stopOnce.Do(func() {
		c.ep.remove(c)
		c.mu.Lock()
		c.stopped = true
		c.mu.Unlock()
		close(c.stopc)
	})
	<-c.done
	c.mu.Lock()
	defer c.mu.Unlock()
	return Stats{Frames: c.frames, Dropped: c.dropped, Bytes: c.size, Capped: c.capped}, c.err
}

// record appends pkt, seen at now, to the current buffer as one pcap
// record. It runs on the frame path: it never blocks on the output and
// never allocates.
func (c *Capture) record(pkt *stack.PacketBuffer, now time.Time) {
	skip := len(pkt.VirtioNetHeader().Slice()) // not part of the frame
	n := pkt.Size() - skip
	capLen := min(n, Snaplen)
	need := RecordHeaderLen + capLen
	c.mu.Lock()
	switch {
	case c.stopped || c.capped:
	case c.size+int64(need) > c.max:
		c.capped = true
		close(c.cappedc)
		c.signal() // the writer logs it
	default:
		if len(c.cur)+need > cap(c.cur) {
			c.rotate()
		}
		if c.cur == nil {
			c.dropped++
			break
		}
		c.cur = appendRecordHeader(c.cur, now, capLen, n)
		c.cur = appendFrame(c.cur, pkt, skip, capLen)
		c.size += int64(need)
		c.frames++
	}
	c.mu.Unlock()
}

// appendFrame appends length bytes of pkt's frame, from offset skip, to b.
func appendFrame(b []byte, pkt *stack.PacketBuffer, skip, length int) []byte {
	views, off := pkt.AsViewList()
	off += skip
	for v := views.Front(); v != nil && length > 0; v = v.Next() {
		s := v.AsSlice()
		if off >= len(s) {
			off -= len(s)
			continue
		}
		s = s[off:]
		off = 0
		if len(s) > length {
			s = s[:length]
		}
		b = append(b, s...)
		length -= len(s)
	}
	return b
}

// rotate queues the current buffer for the writer, when it holds
// anything, and takes a free one (none: nil, and frames are dropped until
// the writer returns one). c.mu must be held.
func (c *Capture) rotate() {
	if len(c.cur) > 0 {
		c.queue = append(c.queue, c.cur)
		c.signal()
	} else if c.cur != nil {
		c.free = append(c.free, c.cur)
	}
	c.cur = nil
	if n := len(c.free); n > 0 {
		c.cur, c.free = c.free[n-1][:0], c.free[:n-1]
	}
}

// signal wakes the writer goroutine without waiting.
func (c *Capture) signal() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// run writes queued buffers as they fill, and the current one every
// flushInterval, until Stop; then everything left.
func (c *Capture) run() {
	defer close(c.done)
	tick := time.NewTicker(flushInterval)
	defer tick.Stop()
	for {
		select {
		case <-c.kick:
			c.flush(false)
		case <-tick.C:
			c.flush(true)
		case <-c.stopc:
			c.flush(true)
			return
		}
	}
}

// flush writes the queued buffers, and with all the current one too, to
// the output, in the order frames went into them, and frees them.
func (c *Capture) flush(all bool) {
	c.mu.Lock()
	c.batch = append(c.batch[:0], c.queue...)
	clear(c.queue)
	c.queue = c.queue[:0]
	if all && len(c.cur) > 0 {
		c.batch = append(c.batch, c.cur)
		c.cur = nil
	}
	capped := c.capped
	c.mu.Unlock()
	if capped && !c.cappedLogged {
		c.cappedLogged = true
		c.log.Warn("packet capture stopped: size cap reached; frames after it are not recorded", "max_bytes", c.max)
	}
	for _, b := range c.batch {
		if c.err != nil {
			break
		}
		if _, err := c.out.Write(b); err != nil {
			c.err = err
			c.log.Error("packet capture stopped: writing it failed", "err", err)
		}
	}
	c.mu.Lock()
	if c.err != nil {
		c.stopped = true
	}
	for _, b := range c.batch {
		c.free = append(c.free, b[:0])
	}
	c.mu.Unlock()
	clear(c.batch)
}
