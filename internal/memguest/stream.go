package memguest

import (
	"bufio"
	"context"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/link/ethernet"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// streamQueue is how many frames the guest's stack may queue for the
// connection: as deep as a tap's queue (1000 frames).
const streamQueue = 1024

// NewStream returns a guest with no addresses that speaks QEMU's stream
// netdev protocol on conn (a 4-byte big-endian length before each
// Ethernet frame), as QEMU does after connecting to masq's --socket. Two
// goroutines carry the frames between conn and the guest's stack; they
// stop, and conn is closed, when the test ends. The test may close conn
// earlier to disconnect the guest, as a QEMU exiting does.
func NewStream(tb testing.TB, mtu uint32, conn net.Conn) *Guest {
	tb.Helper()
	ch := channel.New(streamQueue, mtu+header.EthernetMinimumSize, MAC) // ethernet.New takes the header off
	l := &streamLink{conn: conn}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	rec := new(ndpRecorder)
	s := newStack(tb, ethernet.New(ch), rec, func() {
		cancel()
		conn.Close()
		wg.Wait()
		ch.Close()
	})
	wg.Go(func() { l.send(ctx, ch) })
	wg.Go(func() { l.receive(ch) })
	return &Guest{Stack: s, fd: -1, stream: l, ndp: rec}
}

// streamLink is the guest's end of a stream link.
type streamLink struct {
	conn net.Conn
	mu   sync.Mutex // one frame at a time on conn
}

// send writes the frames the guest's stack sends to conn until ctx ends
// or conn fails.
func (l *streamLink) send(ctx context.Context, ch *channel.Endpoint) {
	for {
		pkt := ch.ReadContext(ctx)
		if pkt == nil {
			return
		}
		err := l.write(pkt.AsSlices())
		pkt.DecRef()
		if err != nil {
			return
		}
	}
}

// write sends one frame made of views.
func (l *streamLink) write(views [][]byte) error {
	n := 0
	for _, v := range views {
		n += len(v)
	}
	var prefix [4]byte
	binary.BigEndian.PutUint32(prefix[:], uint32(n))
	bufs := append(net.Buffers{prefix[:]}, views...)
	l.mu.Lock()
	defer l.mu.Unlock()
	_, err := bufs.WriteTo(l.conn)
	return err
}

// receive hands the frames read from conn to the guest's stack until
// conn ends.
func (l *streamLink) receive(ch *channel.Endpoint) {
	r := bufio.NewReaderSize(l.conn, 256<<10)
	var prefix [4]byte
	buf := make([]byte, 1<<17)
	for {
		if _, err := io.ReadFull(r, prefix[:]); err != nil {
			return
		}
		n := binary.BigEndian.Uint32(prefix[:])
		if int(n) > len(buf) {
			return // not a frame masq would send
		}
		if _, err := io.ReadFull(r, buf[:n]); err != nil {
			return
		}
		pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(buf[:n])})
		ch.InjectInbound(0, pkt) // the ethernet link above reads the type
		pkt.DecRef()
	}
}
