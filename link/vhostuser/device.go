package vhostuser

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"net"
	"os"
	"runtime/debug"
	"sync"

	"golang.org/x/sys/unix"
)

// device is one front-end's session: the protocol's state (features,
// memory table, queues) from its connection's first message to its last.
// Its serve loop is the only writer of the state outside the queues'
// locks; the data path reads it under them.
type device struct {
	e    *Endpoint
	conn *conn

	features, protocol uint64 // as negotiated; written by serve under both queue locks

	// mem is guest memory; replaced (and the old unmapped) only with
	// every queue's lock held.
	mem    *memTable
	queues [numQueues]queue
	// rxWait holds the frames waiting for receive buffers; guarded by the
	// receive queue's lock.
	rxWait backlog
	wg     sync.WaitGroup // the transmit queue's worker
}

// queue is one virtqueue's state.
type queue struct {
	mu sync.Mutex

	size    uint32    // from SET_VRING_NUM; 0 until then
	addr    vringAddr // from SET_VRING_ADDR
	hasAddr bool
	base    uint16 // from SET_VRING_BASE: where the avail ring resumes
	enabled bool

	// started says ring is in use: between SET_VRING_KICK (the memory
	// table and the ring's parts translating) and GET_VRING_BASE.
	started bool
	ring    vring

	kick *os.File // the driver's kicks; the transmit queue's worker reads it
	done chan struct{}
	call int // eventfd to notify the driver, or -1
	err  int // eventfd for errors, or -1 (kept, never written)
}

func newDevice(e *Endpoint, c *conn) *device {
	d := &device{e: e, conn: c}
	for i := range d.queues {
		d.queues[i].call, d.queues[i].err = -1, -1
	}
	return d
}

// guestTSO says whether the guest takes TSO segments with partial
// checksums.
func (d *device) guestTSO() bool {
	q := &d.queues[rxQueue]
	q.mu.Lock()
	defer q.mu.Unlock()
	return d.features&featNetGuestCsum != 0 && d.features&(featNetGuestTSO4|featNetGuestTSO6) != 0
}

// hdrLen is the size of the virtio-net header before each frame: with
// num_buffers under VIRTIO_F_VERSION_1 or MRG_RXBUF.
func (d *device) hdrLen() int {
	if d.features&(featVersion1|featNetMrgRxbuf) != 0 {
		return 12
	}
	return 10
}

// lockAll locks every queue (transmit first: its worker writes to the
// receive queue while it holds its own lock).
func (d *device) lockAll() {
	d.queues[txQueue].mu.Lock()
	d.queues[rxQueue].mu.Lock()
}

func (d *device) unlockAll() {
	d.queues[rxQueue].mu.Unlock()
	d.queues[txQueue].mu.Unlock()
}

// serve handles the front-end's messages until its connection ends (nil)
// or it breaks the protocol (an error).
func (d *device) serve() (err error) {
	// The rings' used index is read here when a queue starts: a fault on
	// guest memory ends the session (see faultGuard).
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(interface{ Addr() uintptr }); !ok {
				panic(r)
			}
			d.e.stats.faults.Add(1)
			err = fmt.Errorf("guest memory faulted: %v", r)
		}
	}()
	for {
		m, err := d.conn.read()
		if err != nil {
			if isClosed(err) {
				return nil
			}
			return fmt.Errorf("read message: %w", err)
		}
		reply, err := d.handle(&m)
		d.e.log.Debug("vhost-user request", "request", m.req, "flags", m.flags, "size", m.size, "fds", len(m.fds), "err", err)
		m.closeFDs()
		if errors.Is(err, errMessage) {
			return err
		}
		if err != nil {
			d.e.log.Warn("vhost-user request refused", "request", m.req, "err", err)
		}
		if err := d.answer(m.msgHeader, reply, err); err != nil {
			return err
		}
	}
}

// isClosed says whether err is the connection's end.
func isClosed(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, unix.ECONNRESET) || errors.Is(err, io.EOF)
}

// answer sends a request's reply: its payload for a request that has one,
// else an ack when the front-end asked for one (REPLY_ACK).
func (d *device) answer(h msgHeader, reply []byte, err error) error {
	if reply != nil {
		return d.conn.reply(h.req, reply)
	}
	if h.flags&flagNeedReply == 0 || d.protocol&protoReplyAck == 0 {
		return nil
	}
	var ack [8]byte
	if err != nil {
		ack[0] = 1
	}
	return d.conn.reply(h.req, ack[:])
}

// u64 encodes a u64 reply.
func u64(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }

// handle carries out one request and returns its reply's payload, for a
// request that has one. An error wrapping errMessage ends the session.
func (d *device) handle(m *message) ([]byte, error) {
	switch m.req {
	case reqGetFeatures:
		return u64(deviceFeatures), nil
	case reqSetFeatures:
		return nil, d.setFeatures(m.payload)
	case reqGetProtocolFeatures:
		return u64(deviceProtocolFeatures), nil
	case reqSetProtocolFeatures:
		f, err := parseU64(m.payload)
		if err == nil {
			d.protocol = f & deviceProtocolFeatures
		}
		return nil, err
	case reqSetOwner:
		return nil, nil
	case reqResetOwner, reqResetDevice:
		d.reset()
		return nil, nil
	case reqSetMemTable:
		return nil, d.setMemTable(m)
	case reqGetQueueNum:
		return u64(numQueues / 2), nil
	case reqSetVringNum, reqSetVringBase, reqSetVringEnable:
		return nil, d.setVringState(m.req, m.payload)
	case reqSetVringAddr:
		return nil, d.setVringAddr(m.payload)
	case reqGetVringBase:
		return d.getVringBase(m.payload)
	case reqSetVringKick, reqSetVringCall, reqSetVringErr:
		return nil, d.setVringFD(m)
	}
	return nil, fmt.Errorf("%s: not supported", m.req)
}

// setFeatures takes the features the front-end chose among those offered.
func (d *device) setFeatures(p []byte) error {
	f, err := parseU64(p)
	if err != nil {
		return err
	}
	if extra := f &^ deviceFeatures; extra != 0 {
		return fmt.Errorf("features %#x were not offered", extra)
	}
	d.lockAll()
	defer d.unlockAll()
	d.features = f
	if f&featProtocolFeatures == 0 {
		// Without protocol features, rings are enabled from the start
		// (no SET_VRING_ENABLE will come).
		for i := range d.queues {
			d.queues[i].enabled = true
		}
	}
	return nil
}

// queueOf returns the queue a payload's index names.
func (d *device) queueOf(index uint32) (*queue, error) {
	if index >= numQueues {
		return nil, fmt.Errorf("queue %d: the device has %d", index, numQueues)
	}
	return &d.queues[index], nil
}

// setVringState handles SET_VRING_NUM, SET_VRING_BASE and
// SET_VRING_ENABLE.
func (d *device) setVringState(req request, p []byte) error {
	s, err := parseVringState(p)
	if err != nil {
		return err
	}
	q, err := d.queueOf(s.index)
	if err != nil {
		return err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	switch req {
	case reqSetVringNum:
		if s.num == 0 || s.num > maxQueueSize || bits.OnesCount32(s.num) != 1 {
			return fmt.Errorf("queue %d: size %d is not a power of two up to %d", s.index, s.num, maxQueueSize)
		}
		if q.started {
			return fmt.Errorf("queue %d: size changed while running", s.index)
		}
		q.size = s.num
	case reqSetVringBase:
		q.base = uint16(s.num)
	case reqSetVringEnable:
		q.enabled = s.num != 0
	}
	return nil
}

// setVringAddr handles SET_VRING_ADDR. A running queue is retranslated.
func (d *device) setVringAddr(p []byte) error {
	a, err := parseVringAddr(p)
	if err != nil {
		return err
	}
	q, err := d.queueOf(a.index)
	if err != nil {
		return err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.addr, q.hasAddr = a, true
	if q.started {
		return d.translate(q, false)
	}
	return nil
}

// translate makes q.ring from its size, addresses and the memory table;
// a queue that does not translate stops. fresh starts the ring at the
// queue's base; otherwise its indexes carry over. q.mu must be held.
func (d *device) translate(q *queue, fresh bool) error {
	if d.mem == nil || q.size == 0 || !q.hasAddr {
		q.started = false
		return fmt.Errorf("queue started before its size, addresses and memory table")
	}
	r, ok := newVring(d.mem, q.size, q.addr, d.features&featRingEventIdx != 0)
	if !ok {
		q.started = false
		return fmt.Errorf("queue of %d entries at desc %#x avail %#x used %#x: outside guest memory or misaligned",
			q.size, q.addr.desc, q.addr.avail, q.addr.used)
	}
	if fresh {
		r.lastAvail = q.base
		r.usedIdx = r.loadUsedIdx()
		r.published = r.usedIdx
	} else {
		r.lastAvail, r.usedIdx, r.published = q.ring.lastAvail, q.ring.usedIdx, q.ring.published
	}
	q.ring, q.started = r, true
	return nil
}

// setMemTable maps the new memory table, retranslates the running queues
// and unmaps the old one.
func (d *device) setMemTable(m *message) error {
	descs, err := parseMemTable(m.payload)
	if err != nil {
		return err
	}
	mem, err := mapMemTable(descs, m.fds)
	if err != nil {
		return fmt.Errorf("%w: %w", errMessage, err)
	}
	d.lockAll()
	old := d.mem
	d.mem = mem
	var errs []error
	for i := range d.queues {
		if q := &d.queues[i]; q.started {
			errs = append(errs, d.translate(q, false))
		}
	}
	d.unlockAll()
	old.unmap()
	return errors.Join(errs...)
}

// getVringBase stops a queue and returns where its avail ring stopped.
func (d *device) getVringBase(p []byte) ([]byte, error) {
	s, err := parseVringState(p)
	if err != nil {
		return nil, err
	}
	q, err := d.queueOf(s.index)
	if err != nil {
		return nil, err
	}
	d.stop(q)
	q.mu.Lock()
	base := q.base
	q.mu.Unlock()
	var b [8]byte
	binary.LittleEndian.PutUint32(b[:], s.index)
	binary.LittleEndian.PutUint32(b[4:], uint32(base))
	return b[:], nil
}

// stop stops q: its worker ends, its kick fd is closed, and its base is
// where the avail ring stopped.
func (d *device) stop(q *queue) {
	q.mu.Lock()
	if q.started {
		q.base = q.ring.lastAvail
		q.started = false
	}
	kick, done := q.kick, q.done
	q.kick, q.done = nil, nil
	q.mu.Unlock()
	if kick != nil {
		kick.Close() // ends the worker's read
	}
	if done != nil {
		<-done
	}
}

// setVringFD handles SET_VRING_KICK, SET_VRING_CALL and SET_VRING_ERR. A
// kick starts the queue.
func (d *device) setVringFD(m *message) error {
	v, err := parseU64(m.payload)
	if err != nil {
		return err
	}
	q, err := d.queueOf(uint32(v & vringFDIndexMask))
	if err != nil {
		return err
	}
	fd := -1
	if v&vringFDInvalid == 0 {
		if fd, err = m.takeFD(); err != nil {
			return err
		}
	}
	switch m.req {
	case reqSetVringKick:
		return d.start(q, fd)
	case reqSetVringCall:
		q.mu.Lock()
		closeFD(q.call)
		q.call = fd
		q.mu.Unlock()
	case reqSetVringErr:
		q.mu.Lock()
		closeFD(q.err)
		q.err = fd
		q.mu.Unlock()
	}
	return nil
}

func closeFD(fd int) {
	if fd >= 0 {
		unix.Close(fd)
	}
}

// start starts q with kick as the driver's kick eventfd (taking ownership
// of it), stopping it first if it runs. A worker drains the queue on each
// kick: the guest's frames from the transmit queue, the frames waiting for
// buffers into the receive queue.
func (d *device) start(q *queue, kick int) error {
	d.stop(q)
	if kick < 0 {
		return fmt.Errorf("queue without a kick eventfd (polling) is not supported")
	}
	if err := unix.SetNonblock(kick, true); err != nil {
		unix.Close(kick)
		return fmt.Errorf("kick eventfd: %w", err)
	}
	f := os.NewFile(uintptr(kick), "vhost-user kick") // non-blocking: read through Go's poller
	q.mu.Lock()
	defer q.mu.Unlock()
	if err := d.translate(q, true); err != nil {
		f.Close()
		return err
	}
	q.kick = f
	drain := d.drainTX
	if q == &d.queues[rxQueue] {
		drain = d.drainRX
	}
	done := make(chan struct{})
	q.done = done
	d.wg.Go(func() { defer close(done); d.worker(f, drain) })
	return nil
}

// reset stops every queue and forgets the negotiation and the memory
// table: the front-end starts over (RESET_OWNER, RESET_DEVICE).
func (d *device) reset() {
	for i := range d.queues {
		d.stop(&d.queues[i])
	}
	d.lockAll()
	old := d.mem
	d.mem, d.features, d.protocol = nil, 0, 0
	if n := d.rxWait.clear(); n > 0 {
		d.e.stats.toGuestNoGuest.Add(uint64(n))
	}
	for i := range d.queues {
		q := &d.queues[i]
		closeFD(q.call)
		closeFD(q.err)
		q.size, q.addr, q.hasAddr, q.base, q.enabled = 0, vringAddr{}, false, 0, false
		q.ring, q.call, q.err = vring{}, -1, -1
	}
	d.unlockAll()
	old.unmap()
}

// release ends the session's use of every resource: the queues stop,
// the memory is unmapped, the eventfds closed.
func (d *device) release() {
	d.reset()
	d.wg.Wait()
}

// faultGuard, deferred by the data path with debug.SetPanicOnFault on,
// turns a fault on guest memory (a front-end that shrank the file behind
// a mapping: SIGBUS) into the session's end instead of masq's crash. Any
// other panic goes on.
func (d *device) faultGuard(restore bool) {
	debug.SetPanicOnFault(restore)
	r := recover()
	if r == nil {
		return
	}
	if _, ok := r.(interface{ Addr() uintptr }); !ok {
		panic(r)
	}
	d.e.stats.faults.Add(1)
	d.e.log.Warn("vhost-user: guest memory faulted (a region's file shrank?); ending the session", "err", r)
	d.conn.c.Close() // serve ends the session
}
