package capture

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/masqnet/masq/internal/testkit"
)

// discardLink is a link that takes every frame written and drops it,
// counting.
type discardLink struct {
	*channel.Endpoint
	written atomic.Int64
}

func (l *discardLink) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	l.written.Add(int64(pkts.Len()))
	return pkts.Len(), nil
}

// countingDispatcher counts the frames delivered to it.
type countingDispatcher struct{ delivered atomic.Int64 }

func (d *countingDispatcher) DeliverNetworkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {
	d.delivered.Add(1)
}
func (d *countingDispatcher) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {}

// newTestEndpoint returns an Endpoint on a discarding link, attached to a
// counting dispatcher.
func newTestEndpoint(t testing.TB) (*Endpoint, *discardLink, *countingDispatcher) {
	t.Helper()
	lower := &discardLink{Endpoint: channel.New(1, 65520, "\x02\x00\x00\x00\x00\x00")}
	ep := New(lower)
	d := &countingDispatcher{}
	ep.Attach(d)
	t.Cleanup(lower.Close)
	return ep, lower, d
}

// frame returns an Ethernet frame of n bytes with random contents after
// an IPv4 EtherType.
func frame(n int) []byte {
	f := make([]byte, n)
	rand.Read(f)
	header.Ethernet(f).Encode(&header.EthernetFields{SrcAddr: "\x52\x54\x00\x12\x34\x56",
		DstAddr: "\x02\x00\x00\x00\x00\x00", Type: header.IPv4ProtocolNumber})
	return f
}

// inbound is f as a link delivers it: Ethernet header consumed.
func inbound(f []byte) *stack.PacketBuffer {
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(f)})
	pkt.LinkHeader().Consume(header.EthernetMinimumSize)
	return pkt
}

// outbound is f as the stack hands it to a link: the Ethernet header
// pushed in front of a payload in views of at most view bytes.
func outbound(f []byte, view int) *stack.PacketBuffer {
	var payload buffer.Buffer
	for rest := f[header.EthernetMinimumSize:]; len(rest) > 0; {
		n := min(view, len(rest))
		payload.Append(buffer.NewViewWithData(rest[:n]))
		rest = rest[n:]
	}
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{ReserveHeaderBytes: header.EthernetMinimumSize, Payload: payload})
	copy(pkt.LinkHeader().Push(header.EthernetMinimumSize), f)
	return pkt
}

// write writes pkt through ep, failing t unless the link took it.
func write(t testing.TB, ep *Endpoint, pkt *stack.PacketBuffer) {
	var pkts stack.PacketBufferList
	pkts.PushBack(pkt)
	if n, err := ep.WritePackets(pkts); n != 1 || err != nil {
		t.Fatalf("WritePackets = %d, %v; want 1, nil", n, err)
	}
}

// parse parses a capture, failing t when it is not a valid pcap file.
func parse(t *testing.T, b []byte) []testkit.PCAPRecord {
	t.Helper()
	snaplen, recs, err := testkit.ParsePCAP(b)
	if err != nil {
		t.Fatal(err)
	}
	if snaplen != Snaplen {
		t.Errorf("snaplen %d, want %d", snaplen, Snaplen)
	}
	return recs
}

func TestCaptureRecordsEveryFrameBothWays(t *testing.T) {
	ep, lower, d := newTestEndpoint(t)
	var out bytes.Buffer
	start := time.Now().Truncate(time.Microsecond)
	c, err := ep.Start(&out, Options{MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	// A frame from the guest, one to it in many views, and a TSO segment
	// of 64 KiB to it.
	frames := [][]byte{frame(60), frame(3000), frame(header.EthernetMinimumSize + 1<<16 - 1)}
	pkts := []*stack.PacketBuffer{inbound(frames[0]), outbound(frames[1], 100), outbound(frames[2], 4096)}
	ep.DeliverNetworkPacket(header.IPv4ProtocolNumber, pkts[0])
	write(t, ep, pkts[1])
	write(t, ep, pkts[2])
	st, err := c.Stop()
	if err != nil {
		t.Fatalf("Stop: %v", err)
	}
	end := time.Now()
	// Off again: frames pass, unrecorded.
	write(t, ep, pkts[1])
	for _, p := range pkts {
		p.DecRef()
	}
	if got, want := d.delivered.Load(), int64(1); got != want {
		t.Errorf("dispatcher got %d frames, want %d", got, want)
	}
	if got, want := lower.written.Load(), int64(3); got != want {
		t.Errorf("link got %d frames, want %d", got, want)
	}
	if want := (Stats{Frames: 3, Bytes: int64(out.Len())}); st != want {
		t.Errorf("Stats = %+v, want %+v", st, want)
	}
	recs := parse(t, out.Bytes())
	if len(recs) != len(frames) {
		t.Fatalf("%d records, want %d", len(recs), len(frames))
	}
	for i, r := range recs {
		if !bytes.Equal(r.Frame, frames[i]) || r.OrigLen != len(frames[i]) {
			t.Errorf("record %d: %d of %d bytes, not the %d-byte frame", i, len(r.Frame), r.OrigLen, len(frames[i]))
		}
		if r.Time.Before(start) || r.Time.After(end) || i > 0 && r.Time.Before(recs[i-1].Time) {
			t.Errorf("record %d at %v: outside the capture [%v, %v] or before the previous", i, r.Time, start, end)
		}
	}
}

func TestCaptureStopsAtTheSizeCap(t *testing.T) {
	ep, _, _ := newTestEndpoint(t)
	var out, logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	c, err := ep.Start(&out, Options{MaxBytes: 4096, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	const size = 500
	fits := (4096 - FileHeaderLen) / (RecordHeaderLen + size) // 7
	for range 3 * fits {
		pkt := outbound(frame(size), size)
		write(t, ep, pkt)
		pkt.DecRef()
	}
	select {
	case <-c.Capped():
	default:
		t.Error("Capped not closed after the cap")
	}
	st, err := c.Stop()
	if err != nil {
		t.Fatal(err)
	}
	wantBytes := int64(FileHeaderLen + fits*(RecordHeaderLen+size))
	if want := (Stats{Frames: uint64(fits), Bytes: wantBytes, Capped: true}); st != want {
		t.Errorf("Stats = %+v, want %+v", st, want)
	}
	if int64(out.Len()) != wantBytes {
		t.Errorf("capture is %d bytes, want %d (the cap is 4096)", out.Len(), wantBytes)
	}
	if recs := parse(t, out.Bytes()); len(recs) != fits {
		t.Errorf("%d records, want %d", len(recs), fits)
	}
	if n := strings.Count(logs.String(), "size cap reached"); n != 1 {
		t.Errorf("%d log lines about the cap, want 1:\n%s", n, logs.String())
	}
}

// blockedWriter blocks every Write until release is closed.
type blockedWriter struct {
	release chan struct{}
	out     bytes.Buffer
}

func (w *blockedWriter) Write(b []byte) (int, error) {
	<-w.release
	return w.out.Write(b)
}

// TestCaptureNeverWaitsForItsOutput: with the output stuck, frames keep
// passing at once; those that find every buffer full are dropped and
// counted, and the file stays whole.
func TestCaptureNeverWaitsForItsOutput(t *testing.T) {
	ep, lower, _ := newTestEndpoint(t)
	w := &blockedWriter{release: make(chan struct{})}
	c, err := ep.Start(w, Options{MaxBytes: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	const n, size = 200, 60000 // 12 MB: three times the buffers
	pkt := outbound(frame(size), 1<<16)
	defer pkt.DecRef()
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for range n {
			write(t, ep, pkt)
		}
	}()
	select {
	case <-sent:
	case <-time.After(10 * time.Second):
		close(w.release)
		t.Fatal("writing frames waited for the capture's output")
	}
	close(w.release)
	st, err := c.Stop()
	if err != nil {
		t.Fatal(err)
	}
	if st.Frames+st.Dropped != n || st.Dropped == 0 || lower.written.Load() != n {
		t.Errorf("Stats = %+v and %d frames passed; want %d recorded or dropped, some dropped, all passed", st, lower.written.Load(), n)
	}
	if recs := parse(t, w.out.Bytes()); uint64(len(recs)) != st.Frames {
		t.Errorf("%d records, want %d", len(recs), st.Frames)
	}
}

// failingWriter fails every Write.
type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestCaptureWriteErrorStopsIt(t *testing.T) {
	ep, _, _ := newTestEndpoint(t)
	var logs bytes.Buffer
	c, err := ep.Start(failingWriter{}, Options{MaxBytes: 1 << 20, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	pkt := outbound(frame(1500), 1500)
	defer pkt.DecRef()
	write(t, ep, pkt)
	time.Sleep(2 * flushInterval) // the writer flushes and fails
	write(t, ep, pkt)
	st, err := c.Stop()
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("Stop returned %v, want the write error", err)
	}
	if st.Frames != 1 {
		t.Errorf("%d frames recorded, want 1 (none after the failure)", st.Frames)
	}
	if n := strings.Count(logs.String(), "disk full"); n != 1 {
		t.Errorf("%d log lines about the failure, want 1:\n%s", n, logs.String())
	}
}

func TestStartRefusesATinyCap(t *testing.T) {
	ep, _, _ := newTestEndpoint(t)
	if _, err := ep.Start(io.Discard, Options{MaxBytes: MinMaxBytes - 1}); err == nil {
		t.Error("Start with a cap below MinMaxBytes succeeded")
	}
}

// TestCapturesRunSideBySide: two captures (--pcap and a live one) both
// get every frame; stopping one leaves the other running.
func TestCapturesRunSideBySide(t *testing.T) {
	ep, _, _ := newTestEndpoint(t)
	var a, b bytes.Buffer
	ca, _ := ep.Start(&a, Options{MaxBytes: 1 << 20})
	cb, _ := ep.Start(&b, Options{MaxBytes: 1 << 20})
	pkt := outbound(frame(100), 100)
	defer pkt.DecRef()
	write(t, ep, pkt)
	if _, err := cb.Stop(); err != nil {
		t.Fatal(err)
	}
	write(t, ep, pkt)
	sa, _ := ca.Stop()
	sb, _ := cb.Stop() // again: the same counts
	if sa.Frames != 2 || sb.Frames != 1 {
		t.Errorf("frames recorded: %d and %d, want 2 and 1", sa.Frames, sb.Frames)
	}
	if ep.state.Load().captures != nil {
		t.Error("captures left on the endpoint after both stopped")
	}
}

// TestCaptureFramesWithoutAllocating pins the frame path's claim: with a
// capture on, a frame each way is recorded without allocating (the
// buffers are the capture's, reused), and with none the wrapper adds
// nothing either.
func TestCaptureFramesWithoutAllocating(t *testing.T) {
	ep, _, _ := newTestEndpoint(t)
	in, out := inbound(frame(1514)), outbound(frame(1514), 1514)
	defer in.DecRef()
	defer out.DecRef()
	var pkts stack.PacketBufferList
	pkts.PushBack(out)
	frames := func() {
		ep.DeliverNetworkPacket(header.IPv4ProtocolNumber, in)
		ep.WritePackets(pkts)
	}
	if allocs := testing.AllocsPerRun(1000, frames); allocs != 0 {
		t.Errorf("capture off: %v allocations per frame pair, want 0", allocs)
	}
	c, err := ep.Start(io.Discard, Options{MaxBytes: 1 << 40})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	// 5000 pairs: 15 MB, so buffers fill, go to the writer and come back.
	if allocs := testing.AllocsPerRun(5000, frames); allocs != 0 {
		t.Errorf("capture on: %v allocations per frame pair, want 0", allocs)
	}
}

// BenchmarkEndpoint is the cost of the wrapper per frame written to the
// guest: "bare" is the link alone, "off" the wrapper with no capture, "on"
// with one writing to io.Discard.
func BenchmarkEndpoint(b *testing.B) {
	for _, size := range []int{1514, header.EthernetMinimumSize + 1<<16 - 1} {
		for _, mode := range []string{"bare", "off", "on"} {
			b.Run(mode+"/"+strconv.Itoa(size), func(b *testing.B) {
				ep, lower, _ := newTestEndpoint(b)
				var w stack.LinkWriter = ep
				var c *Capture
				switch mode {
				case "bare":
					w = lower
				case "on":
					var err error
					if c, err = ep.Start(io.Discard, Options{MaxBytes: 1 << 62}); err != nil {
						b.Fatal(err)
					}
				}
				pkt := outbound(frame(size), 1<<16)
				defer pkt.DecRef()
				var pkts stack.PacketBufferList
				pkts.PushBack(pkt)
				b.SetBytes(int64(size))
				b.ReportAllocs()
				for b.Loop() {
					w.WritePackets(pkts)
				}
				if c != nil {
					reportDropped(b, c)
				}
			})
		}
	}
}

// BenchmarkEndpointParallel is BenchmarkEndpoint "on" with frames from
// several goroutines at once (the guest's reader and the stack's
// writers), contending for the capture.
func BenchmarkEndpointParallel(b *testing.B) {
	ep, _, _ := newTestEndpoint(b)
	c, err := ep.Start(io.Discard, Options{MaxBytes: 1 << 62})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(1514)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		pkt := inbound(frame(1514))
		defer pkt.DecRef()
		for pb.Next() {
			ep.DeliverNetworkPacket(header.IPv4ProtocolNumber, pkt)
		}
	})
	reportDropped(b, c)
}

// reportDropped stops c and reports the share of frames it dropped: a
// benchmark whose capture dropped most frames measured little copying.
func reportDropped(b *testing.B, c *Capture) {
	st, err := c.Stop()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(st.Dropped)/float64(st.Frames+st.Dropped)*100, "%dropped")
}

// BenchmarkRecord is what a capture costs a frame it records when its
// output keeps up (BenchmarkEndpoint's "on" drops most frames: nothing
// writes as fast as a loop produces): the timestamp (read once per frame
// from the guest, once per batch to it), the lock and the copy into the
// buffer.
func BenchmarkRecord(b *testing.B) {
	for _, size := range []int{1514, header.EthernetMinimumSize + 1<<16 - 1} {
		b.Run(strconv.Itoa(size), func(b *testing.B) {
			c := &Capture{max: 1 << 62, cur: make([]byte, 0, bufSize), kick: make(chan struct{}, 1)}
			pkt := outbound(frame(size), 1<<16)
			defer pkt.DecRef()
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if cap(c.cur)-len(c.cur) < RecordHeaderLen+size {
					c.cur = c.cur[:0] // as the writer would
				}
				c.record(pkt, time.Now())
			}
			if c.frames != uint64(b.N) {
				b.Fatalf("%d frames recorded of %d", c.frames, b.N)
			}
		})
	}
}
