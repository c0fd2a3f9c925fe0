package e2e

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Probes of masq's batched guest->outside UDP (the NAT holds a burst's
// datagrams of a flow and sends them in one UDP GSO send) through a real
// tap and real kernels: every datagram a guest socket sends must reach the
// outside host exactly once, whole, in order, with the TTL and "don't
// fragment" the guest gave it, as through a kernel NAT. The test process
// opens its sockets in the namespaces itself (withNetns).

// withNetns runs f on an OS thread that joined the network namespace ns;
// the sockets f opens stay in ns. The thread stays locked, so the runtime
// discards it when f returns.
func withNetns(t *testing.T, ns string, f func() error) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		fd, err := unix.Open(netnsPath(ns), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		errc <- f()
	}()
	if err := <-errc; err != nil {
		t.Fatalf("in namespace %s: %v", ns, err)
	}
}

// udpIn opens a UDP socket bound to addr in namespace ns, closed when t
// ends; with raddr it is connected there.
func udpIn(t *testing.T, ns, addr, raddr string) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	withNetns(t, ns, func() (err error) {
		la := net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr))
		if raddr == "" {
			c, err = net.ListenUDP("udp", la)
		} else {
			c, err = net.DialUDP("udp", la, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(raddr)))
		}
		return err
	})
	t.Cleanup(func() { c.Close() })
	return c
}

// setsockopt sets an integer socket option of c.
func setsockopt(c *net.UDPConn, level, opt, value int) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), level, opt, value) }); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("setsockopt %d/%d=%d: %w", level, opt, value, serr)
	}
	return nil
}

// is6 reports whether c is bound to an IPv6 address.
func is6(c *net.UDPConn) bool {
	return netip.MustParseAddrPort(c.LocalAddr().String()).Addr().Is6()
}

// setTTL sets the TTL (hop limit) of c's next datagrams.
func setTTL(c *net.UDPConn, ttl int) error {
	if is6(c) {
		return setsockopt(c, unix.IPPROTO_IPV6, unix.IPV6_UNICAST_HOPS, ttl)
	}
	return setsockopt(c, unix.IPPROTO_IP, unix.IP_TTL, ttl)
}

// rxDatagram is one datagram a receiver got.
type rxDatagram struct {
	from netip.AddrPort
	data []byte
	ttl  int // its TTL (hop limit) on arrival; -1: unknown
}

// receiver collects what a UDP socket at the outside host receives, with
// each datagram's TTL, until the test ends.
type receiver struct {
	c    *net.UDPConn
	name string // the address it listens on
	mu   sync.Mutex
	got  []rxDatagram
	n    atomic.Int64
	done chan struct{}
}

// newReceiver listens on addr in ns with a big receive buffer and reads
// until t ends.
func newReceiver(t *testing.T, ns, addr string) *receiver {
	t.Helper()
	c := udpIn(t, ns, addr, "")
	r := &receiver{c: c, name: addr, done: make(chan struct{})}
	level, opt := unix.IPPROTO_IP, unix.IP_RECVTTL
	if is6(c) {
		level, opt = unix.IPPROTO_IPV6, unix.IPV6_RECVHOPLIMIT
	}
	for _, o := range [][3]int{{unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 32 << 20}, {level, opt, 1}} {
		if err := setsockopt(c, o[0], o[1], o[2]); err != nil {
			t.Fatal(err)
		}
	}
	go r.read()
	t.Cleanup(func() {
		c.Close()
		<-r.done
	})
	return r
}

func (r *receiver) read() {
	defer close(r.done)
	buf := make([]byte, 1<<16)
	oob := make([]byte, 128)
	for {
		n, oobn, _, from, err := r.c.ReadMsgUDPAddrPort(buf, oob)
		if err != nil {
			return
		}
		d := rxDatagram{from: netip.AddrPortFrom(from.Addr().Unmap(), from.Port()), data: bytes.Clone(buf[:n]), ttl: -1}
		if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
			for _, m := range msgs {
				if (m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_TTL ||
					m.Header.Level == unix.IPPROTO_IPV6 && m.Header.Type == unix.IPV6_HOPLIMIT) && len(m.Data) >= 4 {
					d.ttl = int(binary.NativeEndian.Uint32(m.Data))
				}
			}
		}
		r.mu.Lock()
		r.got = append(r.got, d)
		r.mu.Unlock()
		r.n.Add(1)
	}
}

// from returns the datagrams received from src, in order of arrival.
func (r *receiver) from(src netip.AddrPort) []rxDatagram {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []rxDatagram
	for _, d := range r.got {
		if d.from == src {
			out = append(out, d)
		}
	}
	return out
}

// sources returns every source address r received from.
func (r *receiver) sources() []netip.AddrPort {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []netip.AddrPort
	for _, d := range r.got {
		if !slices.Contains(out, d.from) {
			out = append(out, d.from)
		}
	}
	return out
}

// waitCount waits until the receivers have received want datagrams in
// all, or their count has not grown for quiet; it returns the count.
func waitCount(rs []*receiver, want int64, quiet time.Duration) int64 {
	total := func() int64 {
		var n int64
		for _, r := range rs {
			n += r.n.Load()
		}
		return n
	}
	last, since := total(), time.Now()
	for last < want && time.Since(since) < quiet {
		time.Sleep(200 * time.Microsecond)
		if n := total(); n != last {
			last, since = n, time.Now()
		}
	}
	return last
}

// testPayload is datagram seq of stream of size bytes: its bytes say which
// it is (stream and seq first, when it has room), so a datagram cut,
// mixed up or reordered shows.
func testPayload(stream, seq, size int) []byte {
	b := make([]byte, size)
	for j := range b {
		b[j] = byte(stream*131 + seq*7 + j*13 + j>>8)
	}
	if size >= 8 {
		binary.BigEndian.PutUint32(b, uint32(stream))
		binary.BigEndian.PutUint32(b[4:], uint32(seq))
	}
	return b
}

// streamCheck compares what arrived of a stream to what was sent.
type streamCheck struct {
	lost, dup, late, corrupt int
	firstProblem             string
}

func (s streamCheck) ok() bool { return s.lost+s.dup+s.late+s.corrupt == 0 }

func (s streamCheck) String() string {
	return fmt.Sprintf("lost %d, duplicated %d, reordered %d, corrupt %d; first: %s", s.lost, s.dup, s.late, s.corrupt, s.firstProblem)
}

// checkStream matches got, in order of arrival, against want, in order of
// sending: a datagram that matches one not yet seen after the last match
// is in order (those skipped are lost unless they come later); one that
// matches an earlier one not yet seen arrived late (reordered); one that
// matches only datagrams already seen is a duplicate; one that matches
// none is corrupt.
func checkStream(want [][]byte, got []rxDatagram) streamCheck {
	var s streamCheck
	note := func(f string, args ...any) {
		if s.firstProblem == "" {
			s.firstProblem = fmt.Sprintf(f, args...)
		}
	}
	seen := make([]bool, len(want))
	next := 0
	for gi, g := range got {
		k := -1
		for i := next; i < len(want); i++ {
			if !seen[i] && bytes.Equal(want[i], g.data) {
				k = i
				break
			}
		}
		if k >= 0 {
			seen[k], next = true, k+1
			continue
		}
		earlier, dup := -1, false
		for i := 0; i < next; i++ {
			if bytes.Equal(want[i], g.data) {
				if !seen[i] {
					earlier = i
					break
				}
				dup = true
			}
		}
		switch {
		case earlier >= 0:
			seen[earlier] = true
			s.late++
			note("arrival %d is datagram %d (%d bytes), after datagram %d (%d bytes)", gi, earlier, len(want[earlier]), next-1, len(want[next-1]))
		case dup:
			s.dup++
			note("arrival %d (%d bytes) is a duplicate", gi, len(g.data))
		default:
			s.corrupt++
			note("arrival %d (%d bytes) matches no datagram sent", gi, len(g.data))
		}
	}
	for i, ok := range seen {
		if !ok {
			s.lost++
			note("datagram %d (%d bytes) never arrived", i, len(want[i]))
		}
	}
	return s
}

// guestStream is what one guest socket sent to one destination.
type guestStream struct {
	name string
	id   int            // the stream number its payloads carry (testPayload); 0: any datagram is its
	src  netip.AddrPort // as the outside host sees it: the pod's address, the guest's port
	rx   *receiver
	sent [][]byte
	ttls []int // the TTL each should arrive with; nil: not checked
}

// checkStreams fails t for every stream that did not arrive exactly once,
// whole and in order (and with its TTLs), and returns the datagrams sent
// and lost in all.
func checkStreams(t *testing.T, streams []*guestStream) (sent, lost int) {
	t.Helper()
	for _, s := range streams {
		got := s.rx.from(s.src)
		if s.id != 0 {
			got = slices.DeleteFunc(got, func(d rxDatagram) bool {
				return len(d.data) < 8 || binary.BigEndian.Uint32(d.data) != uint32(s.id)
			})
		}
		c := checkStream(s.sent, got)
		sent += len(s.sent)
		lost += c.lost
		if !c.ok() {
			t.Errorf("%s: %d sent, %d received: %v", s.name, len(s.sent), len(got), c)
		}
		if s.ttls == nil || !c.ok() {
			continue
		}
		for i, d := range got {
			if d.ttl != s.ttls[i] {
				t.Errorf("%s: datagram %d arrived with TTL %d, want %d", s.name, i, d.ttl, s.ttls[i])
				break
			}
		}
	}
	return sent, lost
}

// podSource is where the outside host sees a guest port's datagrams come
// from: the pod's address of the family, the same port (masq keeps the
// guest's port when it is free in the pod).
func podSource(six bool, port int) netip.AddrPort {
	a := podAddr4
	if six {
		a = podAddr6
	}
	return netip.AddrPortFrom(netip.MustParseAddr(a), uint16(port))
}

// hostPort joins a host and port, bracketing IPv6.
func hostPort(host string, port int) string {
	return net.JoinHostPort(host, fmt.Sprint(port))
}

// TestUDPBatchIntegrity: five guest sockets (three IPv4, two IPv6) send
// about ten thousand datagrams in bursts, each socket alternating between
// two destinations, of sizes from 0 to 65507 bytes (1473: fragmented at
// MTU 1500, 65507: the most IPv4 carries), in runs of one size that masq
// batches and runs of mixed sizes that end batches. The outside host must
// get every datagram exactly once, whole, in order per socket and
// destination, with the TTL the guest gave less one. The sender waits for
// each burst to arrive before the next, so nothing is lost to overload.
// Without offload (no bursts: every datagram sent on arrival) as the
// baseline.
func TestUDPBatchIntegrity(t *testing.T) {
	for _, mode := range []struct {
		name string
		args []string
	}{{"offload", nil}, {"no-offload", []string{"--no-offload"}}} {
		t.Run(mode.name, func(t *testing.T) { udpBatchIntegrity(t, mode.args...) })
	}
}

// udpBatchIntegrity is TestUDPBatchIntegrity with masq run with args.
func udpBatchIntegrity(t *testing.T, args ...string) {
	tp := newTopology(t, 1500)
	m := startMasq(t, tp, "masq", args...)
	guestStatic4(t, tp)
	guestStatic6(t, tp, false)
	var rxs [2][]*receiver // by family, two destinations each
	for i, host := range []string{outAddr4, outAddr6} {
		for port := 7101; port <= 7102; port++ {
			rxs[i] = append(rxs[i], newReceiver(t, tp.Out, hostPort(host, port)))
		}
	}
	all := append(slices.Clone(rxs[0]), rxs[1]...)
	// A flow whose batch the kernel refused to segment (datagrams over
	// the path MTU) is sent unbatched from then on: the sockets of max
	// 1472 (IPv6: 1452) never send such and stay batched.
	type sock struct {
		c       *net.UDPConn
		port    int
		max     int // bytes of its largest datagram
		streams [2]*guestStream
	}
	var socks []*sock
	for _, c := range []struct {
		six  bool
		port int
		max  int
	}{{false, 41001, 65507}, {false, 41002, 1472}, {false, 41003, 1472}, {true, 41101, 65507}, {true, 41102, 1452}} {
		host, fam := guest4, 0
		if c.six {
			host, fam = guest6, 1
		}
		s := &sock{c: udpIn(t, tp.Guest, hostPort(host, c.port), ""), port: c.port, max: c.max}
		for d := range 2 {
			s.streams[d] = &guestStream{name: fmt.Sprintf("guest :%d -> %s", c.port, rxs[fam][d].name),
				src: podSource(c.six, c.port), rx: rxs[fam][d]}
		}
		socks = append(socks, s)
	}
	var sent int64
	send := func(s *sock, d, size int) {
		st := s.streams[d]
		p := testPayload(s.port*2+d, len(st.sent), size)
		to := st.rx.c.LocalAddr().(*net.UDPAddr)
		if _, err := s.c.WriteToUDP(p, to); err != nil {
			t.Fatalf("guest :%d: send %d bytes: %v", s.port, size, err)
		}
		st.sent = append(st.sent, p)
		st.ttls = append(st.ttls, 63) // the guest's 64, less masq's hop
		sent++
	}
	// The first datagram of each stream alone: the guest resolves its
	// gateway, the pod the outside host.
	for _, s := range socks {
		for d := range 2 {
			send(s, d, 8)
		}
	}
	if got := waitCount(all, sent, 5*time.Second); got != sent {
		t.Fatalf("warm-up: %d of %d datagrams arrived", got, sent)
	}
	sizes := []int{0, 1, 7, 100, 512, 1000, 1400, 1472, 1473, 3000, 8000, 65507}
	batchable := []int{100, 512, 1000, 1400, 1472}
	rng := rand.New(rand.NewPCG(11, 22))
	const rounds = 300
	var stalls int
	missing := int64(0) // given up on: lost unless they come late
	start := time.Now()
	for r := range rounds {
		size := batchable[rng.IntN(len(batchable))]
		if rng.IntN(10) < 3 {
			size = sizes[rng.IntN(len(sizes))]
		}
		mixed := rng.IntN(4) == 0 // each datagram of its own size
		k := 1 + rng.IntN(16)
		if size > 3000 {
			k = 1 + rng.IntN(2)
		}
		every := 1 + rng.IntN(8) // datagrams to one destination before the other
		sizeOf := func(s *sock) int {
			sz := size
			if mixed {
				sz = sizes[rng.IntN(len(sizes)-1)] // all but 65507
			}
			if sz > s.max {
				sz = s.max
			}
			return sz
		}
		if rng.IntN(3) == 0 {
			// Interleaved: one datagram of each socket in turn.
			for i := range k {
				for _, s := range socks {
					send(s, (i/every+r)%2, sizeOf(s))
				}
			}
		} else {
			// A run of each socket's datagrams in turn: what masq batches.
			for _, s := range socks {
				for i := range k {
					send(s, (i/every+r)%2, sizeOf(s))
				}
			}
		}
		if got := waitCount(all, sent-missing, 300*time.Millisecond); got < sent-missing {
			stalls++
			missing = sent - got
		}
	}
	took := time.Since(start)
	waitCount(all, sent, time.Second) // late ones
	var streams []*guestStream
	for _, s := range socks {
		streams = append(streams, s.streams[:]...)
	}
	total, lost := checkStreams(t, streams)
	for _, r := range all {
		for _, src := range r.sources() {
			if !slices.ContainsFunc(streams, func(s *guestStream) bool { return s.src == src && s.rx == r }) {
				t.Errorf("%s received from %v, no guest socket's mapping", r.name, src)
			}
		}
	}
	t.Logf("%d datagrams in %d bursts in %v; %d lost, %d bursts stalled; masq: %s", total, rounds,
		took.Round(time.Millisecond), lost, stalls, udpSendStats(m.log()))
	// A GSO send counts once in the pod's OutDatagrams.
	t.Logf("the pod's kernel counted %d UDP sends (OutDatagrams) for the %d datagrams", udpOutDatagrams(t, tp.Pod), total)
}

// udpOutDatagrams returns the UDP OutDatagrams counters of namespace ns,
// IPv4's and IPv6's added: one per datagram sent, or per UDP GSO send of
// several.
func udpOutDatagrams(t *testing.T, ns string) int {
	t.Helper()
	out, err := inNetns(ns, "cat", "/proc/net/snmp", "/proc/net/snmp6")
	if err != nil {
		t.Fatalf("/proc/net/snmp: %v", err)
	}
	var names []string
	total := 0
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		var n int
		switch {
		case len(f) == 2 && f[0] == "Udp6OutDatagrams":
			fmt.Sscan(f[1], &n)
		case len(f) > 0 && f[0] == "Udp:" && names == nil:
			names = f
		case len(f) > 0 && f[0] == "Udp:":
			if i := slices.Index(names, "OutDatagrams"); i > 0 && i < len(f) {
				fmt.Sscan(f[i], &n)
			}
		}
		total += n
	}
	return total
}

// udpSendStats returns what masq's log says of failed UDP sends, if
// anything.
func udpSendStats(log string) string {
	var out []string
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "send_failed") || strings.Contains(line, "panic:") {
			out = append(out, strings.TrimSpace(line))
		}
	}
	if len(out) == 0 {
		return "no failed sends logged"
	}
	return strings.Join(out, " | ")
}

// isErrno reports whether err is errno.
func isErrno(err error, errno syscall.Errno) bool { return errors.Is(err, errno) }

// guestSend sends p from c (to to, when c is not connected), again when
// a send fails for an error pending on the socket: an ICMP error an
// earlier datagram drew, which the kernel reports on the next send instead
// of sending it (several may come back one after the other).
func guestSend(c *net.UDPConn, p []byte, to *net.UDPAddr) error {
	for try := 0; ; try++ {
		var err error
		if to == nil {
			_, err = c.Write(p)
		} else {
			_, err = c.WriteToUDP(p, to)
		}
		pending := isErrno(err, syscall.ECONNREFUSED) || isErrno(err, syscall.EHOSTUNREACH) ||
			isErrno(err, syscall.ENETUNREACH) || isErrno(err, syscall.EMSGSIZE)
		if err == nil || try == 8 || !pending {
			return err
		}
	}
}

// TestUDPBatchPortUnreachable: a guest's connected UDP socket streams in
// bursts to the outside host; the server closes its port mid-stream: the
// guest's socket must fail with ECONNREFUSED (the outside host's port
// unreachable, relayed); the server opens the port again: every datagram
// the guest then sends must arrive, once and in order. IPv4 and IPv6.
func TestUDPBatchPortUnreachable(t *testing.T) {
	tp := newTopology(t, 1500)
	for _, k := range []string{"net.ipv4.icmp_ratelimit=0", "net.ipv6.icmp.ratelimit=0"} {
		if out, err := inNetns(tp.Out, "sysctl", "-qw", k); err != nil {
			t.Fatalf("sysctl %s: %v\n%s", k, err, out)
		}
	}
	startMasq(t, tp, "masq")
	guestStatic4(t, tp)
	guestStatic6(t, tp, false)
	for _, c := range []struct {
		name, guest, out string
		six              bool
	}{{"ipv4", guest4, outAddr4, false}, {"ipv6", guest6, outAddr6, true}} {
		t.Run(c.name, func(t *testing.T) {
			server := hostPort(c.out, 7201)
			rx := newReceiver(t, tp.Out, server)
			g := udpIn(t, tp.Guest, hostPort(c.guest, 42001), server)
			st := &guestStream{name: "before", id: 1, src: podSource(c.six, 42001), rx: rx}
			// Each phase's datagrams say which phase they are of (its
			// stream number): a datagram sent to the closed port may reach
			// the reopened one.
			burst := func(st *guestStream, n int) (refused int) {
				for range n {
					p := testPayload(st.id, len(st.sent), 600)
					_, err := g.Write(p)
					if isErrno(err, syscall.ECONNREFUSED) {
						refused++
						continue // the guest's kernel did not send it
					}
					if err != nil {
						t.Fatalf("guest send: %v", err)
					}
					st.sent = append(st.sent, p)
				}
				return refused
			}
			// One datagram first, alone: while the guest resolves its
			// gateway and the pod the outside host, a datagram sent
			// meanwhile may overtake the queued ones (the kernel's
			// neighbour queue, as through any router).
			burst(st, 1)
			waitCount([]*receiver{rx}, 1, 5*time.Second)
			for range 5 {
				burst(st, 16)
				waitCount([]*receiver{rx}, int64(len(st.sent)), 2*time.Second)
			}
			checkStreams(t, []*guestStream{st})

			// The port closes: its port unreachable must reach the guest.
			rx.c.Close()
			<-rx.done
			var refused, bursts int
			closed := &guestStream{name: "while closed", id: 2, rx: rx}
			for ; refused == 0 && bursts < 100; bursts++ {
				refused += burst(closed, 16)
				if refused == 0 {
					g.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
					if _, err := g.Read(make([]byte, 16)); isErrno(err, syscall.ECONNREFUSED) {
						refused++
					}
				}
			}
			t.Logf("ECONNREFUSED after %d bursts (%d datagrams sent to the closed port)", bursts, len(closed.sent))
			if refused == 0 {
				t.Fatalf("no ECONNREFUSED in %d bursts of datagrams to a closed port", bursts)
			}

			// The port opens again: everything sent from now on arrives.
			rx2 := newReceiver(t, tp.Out, server)
			after := &guestStream{name: "after reopening", id: 3, src: podSource(c.six, 42001), rx: rx2}
			var refusedAfter int
			for range 20 {
				refusedAfter += burst(after, 16)
				waitCount([]*receiver{rx2}, int64(len(after.sent)), 300*time.Millisecond)
			}
			// Those sent while the port was closed may arrive too: until
			// nothing more comes.
			waitCount([]*receiver{rx2}, int64(len(after.sent)+len(closed.sent)), 500*time.Millisecond)
			sent, lost := checkStreams(t, []*guestStream{after})
			// Of the datagrams sent while the port was closed, at least
			// one drew the port unreachable: the others may arrive late,
			// at the reopened port, each once.
			var late [][]byte
			for _, d := range rx2.from(after.src) {
				if len(d.data) >= 8 && binary.BigEndian.Uint32(d.data) == uint32(closed.id) {
					late = append(late, d.data)
				}
			}
			t.Logf("after reopening: %d sent, %d lost, %d refused by the guest's kernel (late errors); of the %d sent while closed, %d arrived after",
				sent, lost, refusedAfter, len(closed.sent), len(late))
			for i, d := range late {
				if slices.ContainsFunc(late[:i], func(e []byte) bool { return bytes.Equal(d, e) }) {
					t.Errorf("datagram %d sent while the port was closed arrived twice", binary.BigEndian.Uint32(d[4:]))
				}
			}
			if len(late) >= len(closed.sent) {
				t.Errorf("all %d datagrams sent while the port was closed arrived after it reopened, yet one drew the port unreachable: one was sent twice", len(late))
			}
		})
	}
}

// errQueueEntry is one error of a socket's error queue (IP_RECVERR).
type errQueueEntry struct {
	unix.SockExtendedErr
	offender netip.Addr
}

// readErrQueue reads c's error queue without blocking.
func readErrQueue(c *net.UDPConn) []errQueueEntry {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil
	}
	var out []errQueueEntry
	rc.Control(func(fd uintptr) {
		for {
			var buf [2048]byte
			var oob [512]byte
			_, oobn, _, _, err := unix.Recvmsg(int(fd), buf[:], oob[:], unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
			if err != nil {
				return
			}
			msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
			if err != nil {
				continue
			}
			for _, m := range msgs {
				if !(m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_RECVERR ||
					m.Header.Level == unix.IPPROTO_IPV6 && m.Header.Type == unix.IPV6_RECVERR) {
					continue
				}
				const eeSize = int(unsafe.Sizeof(unix.SockExtendedErr{}))
				if len(m.Data) < eeSize {
					continue
				}
				var e errQueueEntry
				e.SockExtendedErr = *(*unix.SockExtendedErr)(unsafe.Pointer(&m.Data[0]))
				if off := m.Data[eeSize:]; len(off) >= 8 {
					switch binary.NativeEndian.Uint16(off) {
					case unix.AF_INET:
						e.offender = netip.AddrFrom4([4]byte(off[4:8]))
					case unix.AF_INET6:
						if len(off) >= 24 {
							e.offender = netip.AddrFrom16([16]byte(off[8:24]))
						}
					}
				}
				out = append(out, e)
			}
		}
	})
	return out
}

// routedTopologyMTU1300 is newRoutedTopology with the router's link to the
// outside host at MTU 1300, as TestPathMTUThroughRouter has it.
func routedTopologyMTU1300(t *testing.T) *topology {
	t.Helper()
	tp := newRoutedTopology(t)
	router := strings.TrimSuffix(tp.Out, "-out") + "-rt"
	ip(t, "-n", router, "link", "set", "eth0", "mtu", "1300")
	ip(t, "-n", tp.Out, "link", "set", "eth0", "mtu", "1300")
	return tp
}

// podLinkSource is podSource for the routed topology's pod.
func podLinkSource(six bool, port int) netip.AddrPort {
	a := podLink4
	if six {
		a = podLink6
	}
	return netip.AddrPortFrom(netip.MustParseAddr(a), uint16(port))
}

// TestUDPBatchTTLMidBurst: a guest socket changes its TTL (hop limit)
// between the datagrams of each burst, as a traceroute does: 64, and 2
// (the pod sends 1: the router answers time exceeded), and 3 (the router
// forwards it with 1). Each datagram must leave with the guest's TTL less
// one: those of TTL 64 and 3 arrive, in order, with 62 and 1; none of TTL
// 2 arrives, and the router's time exceeded reaches the guest. IPv4 and
// IPv6.
func TestUDPBatchTTLMidBurst(t *testing.T) {
	tp := newRoutedTopology(t)
	startMasq(t, tp, "masq")
	guestStatic4(t, tp)
	guestStatic6(t, tp, false)
	for _, c := range []struct {
		name, guest, out, router string
		six                      bool
	}{{"ipv4", guest4, outAddr4, routerPod4, false}, {"ipv6", guest6, outAddr6, routerPod6, true}} {
		t.Run(c.name, func(t *testing.T) {
			rx := newReceiver(t, tp.Out, hostPort(c.out, 7301))
			g := udpIn(t, tp.Guest, hostPort(c.guest, 43001), "")
			level, opt := unix.IPPROTO_IP, unix.IP_RECVERR
			if c.six {
				level, opt = unix.IPPROTO_IPV6, unix.IPV6_RECVERR
			}
			if err := setsockopt(g, level, opt, 1); err != nil {
				t.Fatal(err)
			}
			st := &guestStream{name: c.name + " TTL 64 and 3", src: podLinkSource(c.six, 43001), rx: rx}
			to := rx.c.LocalAddr().(*net.UDPAddr)
			pattern := []int{64, 64, 64, 2, 64, 64, 3, 3, 64, 2, 2, 64}
			var expired int
			send := func(seq, ttl int) {
				if err := setTTL(g, ttl); err != nil {
					t.Fatal(err)
				}
				p := testPayload(2, seq, 900)
				if err := guestSend(g, p, to); err != nil {
					t.Fatalf("guest send (TTL %d): %v", ttl, err)
				}
				if ttl == 2 {
					expired++
					return
				}
				st.sent = append(st.sent, p)
				st.ttls = append(st.ttls, ttl-2) // masq's hop, the router's
			}
			send(0, 64) // warm-up
			waitCount([]*receiver{rx}, 1, 5*time.Second)
			seq := 1
			for range 20 {
				for _, ttl := range pattern {
					send(seq, ttl)
					seq++
				}
				waitCount([]*receiver{rx}, int64(len(st.sent)), 300*time.Millisecond)
			}
			waitCount([]*receiver{rx}, int64(len(st.sent)), time.Second)
			checkStreams(t, []*guestStream{st})
			var timeExceeded int
			waitFor(2*time.Second, func() bool {
				for _, e := range readErrQueue(g) {
					if e.Origin == unix.SO_EE_ORIGIN_ICMP && e.Type == 11 || e.Origin == unix.SO_EE_ORIGIN_ICMP6 && e.Type == 3 {
						if e.offender == netip.MustParseAddr(c.router) {
							timeExceeded++
						}
					}
				}
				return timeExceeded > 0
			})
			t.Logf("%d datagrams expired at the router, %d time exceeded from %s reached the guest", expired, timeExceeded, c.router)
			if timeExceeded == 0 {
				t.Errorf("no time exceeded from the router %s reached the guest", c.router)
			}
		})
	}
}

// TestUDPBatchDontFragment: through a router whose link to the outside host
// has MTU 1300, a guest socket switches "don't fragment" (IP_MTU_DISCOVER
// do / dont) between the datagrams of each burst, of 1200 bytes (fits) and
// 1400 (does not). Every datagram without DF, and every one that fits,
// must arrive once and in order (the router fragments those of 1400; once
// the pod knows the path MTU, its kernel refuses to segment them and masq
// sends them one by one); no 1400-byte one with DF may arrive, and the
// guest must learn the path MTU 1300.
func TestUDPBatchDontFragment(t *testing.T) {
	tp := routedTopologyMTU1300(t)
	startMasq(t, tp, "masq")
	guestStatic4(t, tp)
	rx := newReceiver(t, tp.Out, hostPort(outAddr4, 7401))
	g := udpIn(t, tp.Guest, hostPort(guest4, 44001), "")
	if err := setsockopt(g, unix.IPPROTO_IP, unix.IP_RECVERR, 1); err != nil {
		t.Fatal(err)
	}
	st := &guestStream{name: "fits or without DF", src: podLinkSource(false, 44001), rx: rx}
	to := rx.c.LocalAddr().(*net.UDPAddr)
	type dgram struct {
		size int
		df   bool
	}
	pattern := []dgram{{1200, true}, {1200, true}, {1400, false}, {1400, false}, {1400, true}, {1400, true},
		{1200, false}, {1200, false}, {1400, false}, {1200, true}}
	var bigDF, refusedLocally int
	var bigDFPayloads [][]byte
	send := func(seq int, d dgram) {
		mode := unix.IP_PMTUDISC_DONT
		if d.df {
			mode = unix.IP_PMTUDISC_DO
		}
		if err := setsockopt(g, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, mode); err != nil {
			t.Fatal(err)
		}
		p := testPayload(3, seq, d.size)
		err := guestSend(g, p, to)
		switch {
		case isErrno(err, syscall.EMSGSIZE) && d.df && d.size > 1300:
			refusedLocally++ // the guest knows the path MTU
			return
		case err != nil:
			t.Fatalf("guest send (%d bytes, df %v): %v", d.size, d.df, err)
		}
		if d.df && d.size > 1300 {
			bigDF++
			bigDFPayloads = append(bigDFPayloads, p)
			return
		}
		st.sent = append(st.sent, p)
	}
	send(0, dgram{100, false}) // warm-up
	waitCount([]*receiver{rx}, 1, 5*time.Second)
	seq := 1
	for range 30 {
		for _, d := range pattern {
			send(seq, d)
			seq++
		}
		waitCount([]*receiver{rx}, int64(len(st.sent)), 300*time.Millisecond)
	}
	waitCount([]*receiver{rx}, int64(len(st.sent)), time.Second)
	checkStreams(t, []*guestStream{st})
	for _, d := range rx.from(st.src) {
		for _, p := range bigDFPayloads {
			if bytes.Equal(d.data, p) {
				t.Errorf("a 1400-byte datagram the guest sent with DF arrived (the router's link has MTU 1300): sent without DF")
				break
			}
		}
	}
	var fragNeeded int
	for _, e := range readErrQueue(g) {
		if e.Errno == uint32(syscall.EMSGSIZE) && e.Info == 1300 {
			fragNeeded++
		}
	}
	t.Logf("1400 bytes with DF: %d sent, %d refused by the guest's kernel (path MTU known); %d errors with MTU 1300 queued",
		bigDF, refusedLocally, fragNeeded)
	if refusedLocally == 0 && fragNeeded == 0 {
		t.Errorf("the guest never learned the path MTU 1300")
	}
}

// TestUDPBatchShutdownDuringFlood: masq stops on SIGTERM while guest
// sockets flood the outside host with datagrams: it exits 0 within
// stopTimeout, without a panic.
func TestUDPBatchShutdownDuringFlood(t *testing.T) {
	tp := newTopology(t, 1500)
	m := startMasq(t, tp, "masq")
	guestStatic4(t, tp)
	guestStatic6(t, tp, false)
	rx4 := newReceiver(t, tp.Out, hostPort(outAddr4, 7501))
	rx6 := newReceiver(t, tp.Out, hostPort(outAddr6, 7501))
	var socks []*net.UDPConn
	for i := range 4 {
		host, to := guest4, rx4
		if i%2 == 1 {
			host, to = guest6, rx6
		}
		socks = append(socks, udpIn(t, tp.Guest, hostPort(host, 45001+i), to.name))
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var sent atomic.Int64
	for i, c := range socks {
		wg.Go(func() {
			p := make([]byte, []int{1400, 1200, 100, 1472}[i])
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := c.Write(p); err == nil {
					sent.Add(1)
				}
			}
		})
	}
	defer func() {
		close(stop)
		for _, c := range socks {
			c.Close() // a blocked send returns
		}
		wg.Wait()
	}()
	waitFor(5*time.Second, func() bool { return rx4.n.Load() > 1000 && rx6.n.Load() > 1000 })
	time.Sleep(300 * time.Millisecond)
	stopped := time.Now()
	code := m.stop(t)
	t.Logf("masq exited %d %v after SIGTERM; %d datagrams sent, %d received", code,
		time.Since(stopped).Round(time.Millisecond), sent.Load(), rx4.n.Load()+rx6.n.Load())
	if code != 0 {
		t.Errorf("masq exited %d after SIGTERM during a flood, want 0", code)
	}
	if l := m.log(); strings.Contains(l, "panic:") || strings.Contains(l, "fatal error:") {
		t.Errorf("masq panicked:\n%s", l)
	}
}

// stalledPodModes runs a stalled-pod test with offload (the NAT batches)
// and without (it does not).
var stalledPodModes = []struct {
	name string
	args []string
}{{"offload", nil}, {"no-offload", []string{"--no-offload"}}}

// stalledPod is a topology whose pod link is shaped to a trickle (tbf at
// 10 kbit/s with a deep queue), so a pod socket's send buffer fills and
// stays full, with masq started with args and the guest's static IPv4
// address set.
func stalledPod(t *testing.T, args []string) (*topology, *proc) {
	t.Helper()
	tp := newTopology(t, 1500)
	if out, err := inNetns(tp.Pod, "tc", "qdisc", "add", "dev", "eth0", "root", "tbf",
		"rate", "10kbit", "burst", "1600", "limit", "100000000"); err != nil {
		t.Fatalf("tc: %v\n%s", err, out)
	}
	m := startMasq(t, tp, "masq", args...)
	guestStatic4(t, tp)
	return tp, m
}

// TestUDPBatchShutdownWithStalledPod: the pod's link is shaped to a
// trickle, so a pod socket's send buffer fills while the guest sends.
// masq must still exit within stopTimeout of SIGTERM, with offload (the
// NAT batches) as without: a send to a full socket drops the datagram
// rather than wait (it used to wait, holding the batch, and the shutdown
// behind it).
func TestUDPBatchShutdownWithStalledPod(t *testing.T) {
	requireTool(t, "tc", "iproute2")
	for _, mode := range stalledPodModes {
		t.Run(mode.name, func(t *testing.T) {
			tp, m := stalledPod(t, mode.args)
			// An open port: the test is about full send buffers, not
			// ICMP errors (TestUDPPodErrorWhileSendBufferFull).
			rx := newReceiver(t, tp.Out, hostPort(outAddr4, 7701))
			g := udpIn(t, tp.Guest, hostPort(guest4, 47001), rx.name)
			// 700 KB for a pod socket whose send buffer holds about 200.
			p := make([]byte, 1400)
			for range 500 {
				g.Write(p)
				time.Sleep(100 * time.Microsecond) // within the tap's queue
			}
			time.Sleep(500 * time.Millisecond)
			stopped := time.Now()
			code := m.stop(t) // fails t unless masq exits within stopTimeout
			t.Logf("masq exited %d %v after SIGTERM", code, time.Since(stopped).Round(time.Millisecond))
			if code != 0 {
				t.Errorf("masq exited %d, want 0", code)
			}
		})
	}
}

// TestUDPPodErrorWhileSendBufferFull: a guest socket talks to an echo
// on the outside host, then floods a closed port of it through a pod link
// shaped to a trickle, so the pod socket's send buffer stays full while
// the host's port unreachables come back (one a second). The flow must
// keep relaying: a datagram the echo sends afterwards reaches the guest.
// (An error queued on a socket that can neither be read nor written makes
// epoll report EPOLLERR alone, which Go's poller turns into "not pollable"
// for a waiting read: the flow's read loop must not take that for its end.)
func TestUDPPodErrorWhileSendBufferFull(t *testing.T) {
	requireTool(t, "tc", "iproute2")
	for _, mode := range stalledPodModes {
		t.Run(mode.name, func(t *testing.T) {
			tp, _ := stalledPod(t, mode.args)
			peer := udpIn(t, tp.Out, hostPort(outAddr4, 7801), "")
			g := udpIn(t, tp.Guest, hostPort(guest4, 48001), "")
			if _, err := g.WriteToUDP([]byte("hello"), peer.LocalAddr().(*net.UDPAddr)); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 2048)
			peer.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, flow, err := peer.ReadFromUDPAddrPort(buf)
			if err != nil {
				t.Fatalf("the echo got nothing from the guest: %v", err)
			}
			closed := net.UDPAddrFromAddrPort(netip.MustParseAddrPort(hostPort(outAddr4, 7702)))
			p := make([]byte, 1400)
			for range 300 {
				g.WriteToUDP(p, closed)
				time.Sleep(100 * time.Microsecond) // within the tap's queue
			}
			time.Sleep(3 * time.Second) // port unreachables come back meanwhile
			if _, err := peer.WriteToUDPAddrPort([]byte("still there?"), flow); err != nil {
				t.Fatal(err)
			}
			g.SetReadDeadline(time.Now().Add(2 * time.Second))
			for {
				n, from, err := g.ReadFromUDPAddrPort(buf)
				if err != nil {
					t.Fatalf("the echo's datagram to the flow (%v) did not reach the guest: %v", flow, err)
				}
				if string(buf[:n]) == "still there?" {
					t.Logf("reached the guest from %v", from)
					return
				}
			}
		})
	}
}

// TestUDPBatchLatencyBesideBulk measures the round trip of small
// datagrams (DNS-like) to an echo on the outside host, alone and while a
// TCP bulk upload from the same guest keeps the tap busy: masq holds a
// burst's datagrams until its reader ends the burst (the tap found empty,
// or 64 frames). It logs the percentiles, with and without offload (no
// offload: no bursts, each datagram sent on arrival); it fails only when a
// probe goes unanswered.
func TestUDPBatchLatencyBesideBulk(t *testing.T) {
	for _, mode := range []struct {
		name string
		args []string
	}{{"offload", nil}, {"no-offload", []string{"--no-offload"}}} {
		t.Run(mode.name, func(t *testing.T) {
			tp := newTopology(t, 1500)
			startMasq(t, tp, "masq", mode.args...)
			guestStatic4(t, tp)
			echo := udpIn(t, tp.Out, hostPort(outAddr4, 7601), "")
			var wg sync.WaitGroup
			wg.Go(func() {
				buf := make([]byte, 2048)
				for {
					n, from, err := echo.ReadFromUDPAddrPort(buf)
					if err != nil {
						return
					}
					echo.WriteToUDPAddrPort(buf[:n], from)
				}
			})
			t.Cleanup(func() { echo.Close(); wg.Wait() })
			var ln net.Listener
			withNetns(t, tp.Out, func() (err error) {
				ln, err = net.Listen("tcp", hostPort(outAddr4, 7602))
				return err
			})
			var received atomic.Int64
			accepted := make(chan net.Conn, 1)
			wg.Go(func() {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				accepted <- c // closed in the cleanup below
				buf := make([]byte, 1<<20)
				for {
					n, err := c.Read(buf)
					received.Add(int64(n))
					if err != nil {
						return
					}
				}
			})
			t.Cleanup(func() {
				ln.Close() // no connection is accepted after
				select {
				case c := <-accepted:
					c.Close()
				default:
				}
			})
			probe := udpIn(t, tp.Guest, hostPort(guest4, 46001), hostPort(outAddr4, 7601))
			measure := func(n int) (rtts []time.Duration, lost int) {
				buf := make([]byte, 64)
				for i := range n {
					msg := testPayload(9, i, 48)
					start := time.Now()
					if _, err := probe.Write(msg); err != nil {
						t.Fatal(err)
					}
					probe.SetReadDeadline(start.Add(time.Second))
					for {
						m, err := probe.Read(buf)
						if err != nil {
							lost++
							break
						}
						if bytes.Equal(buf[:m], msg) {
							rtts = append(rtts, time.Since(start))
							break
						}
					}
					time.Sleep(2 * time.Millisecond)
				}
				return rtts, lost
			}
			measure(5) // warm-up
			idle, idleLost := measure(300)
			var conn net.Conn
			withNetns(t, tp.Guest, func() (err error) {
				conn, err = net.Dial("tcp", hostPort(outAddr4, 7602))
				return err
			})
			var closeOnce sync.Once
			stopBulk := func() { closeOnce.Do(func() { conn.Close() }) }
			t.Cleanup(stopBulk)
			wg.Go(func() {
				buf := make([]byte, 1<<16)
				for {
					if _, err := conn.Write(buf); err != nil {
						return // closed by stopBulk
					}
				}
			})
			time.Sleep(300 * time.Millisecond) // the upload ramps up
			before, bulkStart := received.Load(), time.Now()
			loaded, loadedLost := measure(300)
			rate := float64(received.Load()-before) * 8 / time.Since(bulkStart).Seconds() / 1e9
			stopBulk()
			t.Logf("%s: RTT of a 48-byte datagram alone: %s, lost %d", mode.name, percentiles(idle), idleLost)
			t.Logf("%s: beside a TCP upload of %.2f Gbit/s: %s, lost %d", mode.name, rate, percentiles(loaded), loadedLost)
			if idleLost+loadedLost > 0 {
				t.Errorf("%d of %d probes unanswered within 1s", idleLost+loadedLost, 600)
			}
		})
	}
}

// percentiles formats the median, 90th, 99th percentile and maximum.
func percentiles(d []time.Duration) string {
	if len(d) == 0 {
		return "none"
	}
	s := slices.Clone(d)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	at := func(p float64) time.Duration { return s[min(len(s)-1, int(p*float64(len(s))))] }
	return fmt.Sprintf("p50 %v p90 %v p99 %v max %v (n=%d)", at(0.5).Round(time.Microsecond),
		at(0.9).Round(time.Microsecond), at(0.99).Round(time.Microsecond), s[len(s)-1].Round(time.Microsecond), len(s))
}
