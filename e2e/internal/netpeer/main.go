// Command netpeer is the other end of masq's end-to-end tests: small
// servers for the outside host and the pod, and clients for the guest. The
// tests build it once and run it with `ip netns exec`.
//
// Servers print "ready" once listening, then one line "seen PROTO ADDR"
// for each client (connection or datagram), ADDR being the source address
// the server saw. Clients print what they got and exit non-zero on failure.
//
//	netpeer http     -listen ADDR[,ADDR] -size N   GET /blob: N random bytes, header X-Body-Sha256
//	                                               (also printed: "blob sha256=HEX bytes=N");
//	                                               any other path: the client's address
//	netpeer tcpecho  -listen ADDR[,ADDR] [-quiet]  echo every connection
//	netpeer hold     -listen ADDR[,ADDR]           accept every connection and never read it
//	netpeer udpecho  -listen ADDR[,ADDR]           reply "seen=SRC PAYLOAD" to each datagram
//	netpeer dns      -listen ADDR                  answer A queries with 198.18.0.99, over UDP and TCP
//	netpeer connect  -to ADDR [-echo MSG]          one TCP connection; prints the error and the time taken
//	netpeer tcpmany  -to ADDR -n N                 N concurrent echoed connections, all open at once
//	netpeer udpquery -to ADDR [-bind ADDR] -msg M  one datagram, prints the reply and its source
//	netpeer udpconnect -to ADDR -msg M [-recverr]  one datagram on a connected socket; prints the reply or
//	                                    "refused"; -recverr: every ICMP error fails the read (IP_RECVERR, as
//	                                    systemd-resolved asks), not only port unreachable
//	netpeer dnsquery -to ADDR [-tcp]               one A query for masq.test, prints the answer and its source
//	netpeer send|recv|pull|push                    streams in small writes: see stream.go
package main

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fail("usage: netpeer MODE [flags]")
	}
	mode, args := os.Args[1], os.Args[2:]
	fs := flag.NewFlagSet(mode, flag.ExitOnError)
	listen := fs.String("listen", "", "server: comma-separated addresses to listen on")
	to := fs.String("to", "", "client: address to reach")
	bind := fs.String("bind", "", "udpquery: local address to send from")
	msg := fs.String("msg", "hello", "udpquery: payload")
	echo := fs.String("echo", "", "connect: send this, half-close, and print the echo")
	size := fs.Int("size", 1<<20, "http, send, push: bytes to send")
	chunk := fs.Int("chunk", 100, "send, push: bytes per write")
	n := fs.Int("n", 1000, "tcpmany: connections")
	quiet := fs.Bool("quiet", false, "tcpecho: do not print a line per connection")
	useTCP := fs.Bool("tcp", false, "dnsquery: over TCP")
	recvErr := fs.Bool("recverr", false, "udpconnect: set IP_RECVERR / IPV6_RECVERR")
	timeout := fs.Duration("timeout", 10*time.Second, "client: give up after this long")
	_ = fs.Parse(args)

	var err error
	switch mode {
	case "http":
		err = serveHTTP(split(*listen), *size)
	case "tcpecho":
		err = serveTCPEcho(split(*listen), *quiet)
	case "hold":
		err = serveHold(split(*listen))
	case "udpecho":
		err = serveUDPEcho(split(*listen))
	case "dns":
		err = serveDNS(*listen)
	case "connect":
		err = connect(*to, *echo, *timeout)
	case "tcpmany":
		err = tcpMany(*to, *n, *timeout)
	case "udpquery":
		err = udpQuery(*bind, *to, *msg, *timeout)
	case "udpconnect":
		err = udpConnect(*to, *msg, *recvErr, *timeout)
	case "dnsquery":
		err = dnsQuery(*to, *useTCP, *timeout)
	case "send":
		err = serveSend(split(*listen), *size, *chunk)
	case "recv":
		err = serveRecv(split(*listen))
	case "pull":
		err = pull(*to, *timeout)
	case "push":
		err = push(*to, *size, *chunk, *timeout)
	default:
		err = fmt.Errorf("unknown mode %q", mode)
	}
	if err != nil {
		fail(err.Error())
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "netpeer:", msg)
	os.Exit(1)
}

func split(s string) []string {
	if s == "" {
		fail("-listen is required")
	}
	return strings.Split(s, ",")
}

// out prints lines for the test, one write each.
var outMu sync.Mutex

func say(format string, args ...any) {
	outMu.Lock()
	defer outMu.Unlock()
	fmt.Printf(format+"\n", args...)
}

// listenTCP listens on every address or fails.
func listenTCP(addrs []string) []net.Listener {
	var ls []net.Listener
	for _, a := range addrs {
		l, err := net.Listen("tcp", a)
		if err != nil {
			fail(err.Error())
		}
		ls = append(ls, l)
	}
	return ls
}

// serve runs fn on every listener until the process is killed.
func serve(ls []net.Listener, fn func(net.Listener) error) error {
	errc := make(chan error, len(ls))
	for _, l := range ls {
		go func() { errc <- fn(l) }()
	}
	say("ready")
	return <-errc
}

func serveHTTP(addrs []string, size int) error {
	body := make([]byte, size)
	if _, err := rand.Read(body); err != nil {
		return err
	}
	sum := sha256.Sum256(body)
	digest := hex.EncodeToString(sum[:])
	// For clients that cannot show the header (busybox wget in a VM).
	say("blob sha256=%s bytes=%d", digest, size)
	mux := http.NewServeMux()
	mux.HandleFunc("/blob", func(w http.ResponseWriter, r *http.Request) {
		say("seen tcp %s", r.RemoteAddr)
		w.Header().Set("X-Body-Sha256", digest)
		w.Header().Set("X-Seen-Source", r.RemoteAddr)
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		_, _ = w.Write(body)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		say("seen tcp %s", r.RemoteAddr)
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintln(w, r.RemoteAddr)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	return serve(listenTCP(addrs), srv.Serve)
}

func serveTCPEcho(addrs []string, quiet bool) error {
	return serve(listenTCP(addrs), func(l net.Listener) error {
		for {
			c, err := l.Accept()
			if err != nil {
				return err
			}
			if !quiet {
				say("seen tcp %s", c.RemoteAddr())
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(2 * time.Minute))
				_, _ = io.Copy(c, c)
			}()
		}
	})
}

// serveHold accepts connections and never reads them (a peer whose
// receive window stays shut), holding them open until it is killed.
func serveHold(addrs []string) error {
	var held []net.Conn
	var mu sync.Mutex
	return serve(listenTCP(addrs), func(l net.Listener) error {
		for {
			c, err := l.Accept()
			if err != nil {
				return err
			}
			say("seen tcp %s", c.RemoteAddr())
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	})
}

func serveUDPEcho(addrs []string) error {
	var cs []*net.UDPConn
	for _, a := range addrs {
		ap, err := netip.ParseAddrPort(a)
		if err != nil {
			return err
		}
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(ap))
		if err != nil {
			return err
		}
		cs = append(cs, c)
	}
	errc := make(chan error, len(cs))
	for _, c := range cs {
		go func() {
			b := make([]byte, 64<<10)
			for {
				m, src, err := c.ReadFromUDPAddrPort(b)
				if err != nil {
					errc <- err
					return
				}
				say("seen udp %s", src)
				reply := fmt.Appendf(nil, "seen=%s %s", src, b[:m])
				if _, err := c.WriteToUDPAddrPort(reply, src); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	say("ready")
	return <-errc
}

// dnsAnswer is the address every A query is answered with.
var dnsAnswer = netip.MustParseAddr("198.18.0.99")

// serveDNS answers DNS queries on addr over UDP and TCP.
func serveDNS(addr string) error {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return err
	}
	uc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(ap))
	if err != nil {
		return err
	}
	l := listenTCP([]string{addr})[0]
	errc := make(chan error, 2)
	go func() {
		b := make([]byte, 4096)
		for {
			m, src, err := uc.ReadFromUDPAddrPort(b)
			if err != nil {
				errc <- err
				return
			}
			say("seen dns-udp %s", src)
			if r, ok := dnsReply(b[:m]); ok {
				_, _ = uc.WriteToUDPAddrPort(r, src)
			}
		}
	}()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				errc <- err
				return
			}
			say("seen dns-tcp %s", c.RemoteAddr())
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				q, err := readTCPMsg(c)
				if err != nil {
					return
				}
				if r, ok := dnsReply(q); ok {
					_, _ = c.Write(binary.BigEndian.AppendUint16(nil, uint16(len(r))))
					_, _ = c.Write(r)
				}
			}()
		}
	}()
	say("ready")
	return <-errc
}

// dnsReply answers a query of one question with one A record of
// dnsAnswer.
func dnsReply(q []byte) ([]byte, bool) {
	end, ok := questionEnd(q)
	if !ok {
		return nil, false
	}
	r := append([]byte(nil), q[:end]...)
	binary.BigEndian.PutUint16(r[2:], 0x8180) // response, RD, RA, no error
	binary.BigEndian.PutUint16(r[6:], 1)      // ANCOUNT
	binary.BigEndian.PutUint16(r[8:], 0)
	binary.BigEndian.PutUint16(r[10:], 0)
	r = append(r, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4) // name → question, A, IN, TTL 60
	a := dnsAnswer.As4()
	return append(r, a[:]...), true
}

// questionEnd returns the offset just past the single question of msg.
func questionEnd(msg []byte) (int, bool) {
	if len(msg) < 12 || binary.BigEndian.Uint16(msg[4:]) != 1 {
		return 0, false
	}
	i := 12
	for i < len(msg) && msg[i] != 0 {
		i += 1 + int(msg[i])
	}
	i += 5 // root label, type, class
	return i, i <= len(msg)
}

func readTCPMsg(r io.Reader) ([]byte, error) {
	var n [2]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, err
	}
	b := make([]byte, binary.BigEndian.Uint16(n[:]))
	_, err := io.ReadFull(r, b)
	return b, err
}

// connect makes one TCP connection and reports how it went and how long
// the attempt took: "connected ..." or "error ... refused=BOOL".
func connect(to, echo string, timeout time.Duration) error {
	start := time.Now()
	c, err := net.DialTimeout("tcp", to, timeout)
	elapsed := time.Since(start)
	if err != nil {
		say("error elapsed=%s refused=%t err=%v", elapsed, errors.Is(err, syscall.ECONNREFUSED), err)
		return errors.New("connect failed")
	}
	defer c.Close()
	say("connected elapsed=%s local=%s", elapsed, c.LocalAddr())
	if echo == "" {
		return nil
	}
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, echo); err != nil {
		return err
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return err
	}
	got, err := io.ReadAll(c)
	if err != nil {
		return err
	}
	say("echo=%s", got)
	return nil
}

// tcpMany opens n connections at once to an echo server; each sends a
// line and reads it back, and all stay open until every one has (or has
// failed), so that n are open together.
func tcpMany(to string, n int, timeout time.Duration) error {
	lim := syscall.Rlimit{Cur: uint64(n) + 256, Max: uint64(n) + 256}
	var cur syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &cur); err == nil && cur.Cur < lim.Cur {
		if cur.Max > lim.Max {
			lim.Max = cur.Max
		}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return fmt.Errorf("raising RLIMIT_NOFILE to %d: %w", lim.Cur, err)
		}
	}
	deadline := time.Now().Add(timeout)
	start := time.Now()
	var (
		mu     sync.Mutex
		errs   = map[string]int{}
		failed int
		done   sync.WaitGroup // every connection has echoed or failed
		held   = make(chan struct{})
		ended  sync.WaitGroup
	)
	done.Add(n)
	ended.Add(n)
	for i := range n {
		go func() {
			defer ended.Done()
			err := echoOnce(to, i, deadline, done.Done, held)
			if err != nil {
				mu.Lock()
				failed++
				errs[err.Error()]++
				mu.Unlock()
			}
		}()
	}
	done.Wait()
	all := time.Since(start)
	close(held)
	ended.Wait()
	say("ok=%d failed=%d elapsed=%s", n-failed, failed, all)
	for e, c := range errs {
		say("error x%d: %s", c, e)
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d connections failed", failed, n)
	}
	return nil
}

// echoOnce is one of tcpMany's connections: it calls ready once it has its
// echo (or has failed) and then holds the connection until held closes.
func echoOnce(to string, i int, deadline time.Time, ready func(), held <-chan struct{}) (err error) {
	once := sync.OnceFunc(ready)
	defer once()
	c, err := net.DialTimeout("tcp", to, time.Until(deadline))
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(deadline)
	line := fmt.Sprintf("connection %d\n", i)
	if _, err := io.WriteString(c, line); err != nil {
		return err
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if got != line {
		return fmt.Errorf("echo %q, want %q", got, line)
	}
	once()
	<-held
	return nil
}

// udpQuery sends msg to to from bind and prints the reply and where it
// came from: "reply from=SRC PAYLOAD".
func udpQuery(bind, to, msg string, timeout time.Duration) error {
	dst, err := netip.ParseAddrPort(to)
	if err != nil {
		return err
	}
	var local *net.UDPAddr
	if bind != "" {
		ap, err := netip.ParseAddrPort(bind)
		if err != nil {
			return err
		}
		local = net.UDPAddrFromAddrPort(ap)
	}
	c, err := net.ListenUDP(udpNet(dst.Addr()), local)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.WriteToUDPAddrPort([]byte(msg), dst); err != nil {
		return err
	}
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	b := make([]byte, 64<<10)
	m, src, err := c.ReadFromUDPAddrPort(b)
	if err != nil {
		return err
	}
	say("reply from=%s %s", unmap(src), b[:m])
	return nil
}

// dnsQuery asks to for the A record of masq.test and prints "answer
// from=SRC A=ADDR" when the answer matches the query.
func dnsQuery(to string, useTCP bool, timeout time.Duration) error {
	dst, err := netip.ParseAddrPort(to)
	if err != nil {
		return err
	}
	var id [2]byte
	_, _ = rand.Read(id[:])
	q := append(id[:], 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0) // RD, one question
	q = append(q, 4, 'm', 'a', 's', 'q', 4, 't', 'e', 's', 't', 0, 0, 1, 0, 1)
	var r []byte
	var src netip.AddrPort
	if useTCP {
		c, err := net.DialTimeout("tcp", to, timeout)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(timeout))
		if _, err := c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(q))), q...)); err != nil {
			return err
		}
		if r, err = readTCPMsg(c); err != nil {
			return err
		}
		src = c.RemoteAddr().(*net.TCPAddr).AddrPort()
	} else {
		c, err := net.ListenUDP(udpNet(dst.Addr()), nil)
		if err != nil {
			return err
		}
		defer c.Close()
		if _, err := c.WriteToUDPAddrPort(q, dst); err != nil {
			return err
		}
		_ = c.SetReadDeadline(time.Now().Add(timeout))
		b := make([]byte, 4096)
		m, from, err := c.ReadFromUDPAddrPort(b)
		if err != nil {
			return err
		}
		r, src = b[:m], from
	}
	end, ok := questionEnd(r)
	switch {
	case !ok || r[0] != id[0] || r[1] != id[1] || r[2]&0x80 == 0:
		return fmt.Errorf("from %s: not an answer to the query: %x", src, r)
	case binary.BigEndian.Uint16(r[6:]) != 1 || len(r) < end+16:
		return fmt.Errorf("from %s: no answer record: %x", src, r)
	}
	a := netip.AddrFrom4([4]byte(r[end+12 : end+16]))
	say("answer from=%s A=%s", unmap(src), a)
	return nil
}

func udpNet(a netip.Addr) string {
	if a.Is4() {
		return "udp4"
	}
	return "udp6"
}

func unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// udpConnect sends msg on a UDP socket connected to to and prints the
// reply, or "refused" and how long it took when the socket reports an ICMP
// port unreachable (ECONNREFUSED), as a connected socket does.
func udpConnect(to, msg string, recvErr bool, timeout time.Duration) error {
	dst, err := netip.ParseAddrPort(to)
	if err != nil {
		return err
	}
	c, err := net.DialUDP(udpNet(dst.Addr()), nil, net.UDPAddrFromAddrPort(dst))
	if err != nil {
		return err
	}
	defer c.Close()
	if recvErr {
		level, opt := syscall.IPPROTO_IP, syscall.IP_RECVERR
		if dst.Addr().Is6() {
			level, opt = syscall.IPPROTO_IPV6, syscall.IPV6_RECVERR
		}
		rc, err := c.SyscallConn()
		if err != nil {
			return err
		}
		var serr error
		if err := rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), level, opt, 1) }); err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("recverr: %w", serr)
		}
	}
	start := time.Now()
	if _, err := c.Write([]byte(msg)); err != nil {
		return err
	}
	_ = c.SetReadDeadline(start.Add(timeout))
	b := make([]byte, 64<<10)
	m, err := c.Read(b)
	if errors.Is(err, syscall.ECONNREFUSED) {
		say("refused after=%s", time.Since(start).Round(time.Millisecond))
		return nil
	}
	if err != nil {
		say("error after=%s err=%v", time.Since(start).Round(time.Millisecond), err)
		return err
	}
	say("reply %s", b[:m])
	return nil
}
