// Command tcprr measures TCP transaction rates through a network path: the
// request/response rate (rr: 1-byte ping-pong on one connection) and the
// connection rate (crr: connect, 1-byte exchange, close), as netperf's
// TCP_RR and TCP_CRR do; crr-server is crr with the server closing first,
// as an HTTP/1.0 server does.
//
//	tcprr -s -l :7000                     serve (echo every byte until EOF)
//	tcprr -c 198.18.0.1:7000 -mode rr -t 3s
//	tcprr -c 198.18.0.1:7000 -mode crr -t 3s
//	tcprr -c 198.18.0.1:7000 -mode crr-server -t 3s
//	tcprr -c 198.18.0.2:5201 -mode dial   one connect, for a reachability probe
//
// The client prints one JSON object ({"mode", "transactions", "seconds",
// "rate", "errors", and the latency percentiles "p50_us", "p99_us" of the
// transactions that completed}) and exits 1 when not a single transaction
// completed.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"slices"
	"time"
)

// Request bytes (the server echoes any; they tell the modes apart in a
// capture).
const (
	rrByte  = 'r'
	crrByte = 'c'
	// crrServerByte also asks the server to close once it has echoed it.
	crrServerByte = 's'
)

// dialTimeout bounds one connect: a black-holed path must fail the run, not
// hang it.
const dialTimeout = 2 * time.Second

// result is what the client prints.
type result struct {
	Mode         string  `json:"mode"`
	Transactions int     `json:"transactions"`
	Seconds      float64 `json:"seconds"`
	Rate         float64 `json:"rate"` // transactions per second
	Errors       int     `json:"errors"`
	P50          float64 `json:"p50_us"` // of one transaction, microseconds
	P99          float64 `json:"p99_us"`
	FirstError   string  `json:"first_error,omitempty"`
}

func main() {
	serve := flag.Bool("s", false, "serve")
	listen := flag.String("l", ":7000", "address to serve on")
	addr := flag.String("c", "", "server address to measure against")
	mode := flag.String("mode", "rr", "rr, crr, crr-server or dial")
	dur := flag.Duration("t", 3*time.Second, "measurement duration")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("tcprr: ")
	switch {
	case *serve:
		log.Fatal(runServer(*listen))
	case *addr != "":
		res, err := runClient(*addr, *mode, *dur)
		if err != nil {
			log.Fatal(err)
		}
		if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
			log.Fatal(err)
		}
		if res.Transactions == 0 {
			os.Exit(1)
		}
	default:
		flag.Usage()
		os.Exit(2)
	}
}

func runServer(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return serve(ln)
}

// serve echoes on every connection ln accepts, until ln is closed.
func serve(ln net.Listener) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go echo(c)
	}
}

// echo answers every byte with itself until the client closes, or closes
// itself after echoing crrServerByte.
func echo(c net.Conn) {
	defer c.Close()
	b := make([]byte, 1)
	for {
		if _, err := io.ReadFull(c, b); err != nil {
			return
		}
		if _, err := c.Write(b); err != nil || b[0] == crrServerByte {
			return
		}
	}
}

func runClient(addr, mode string, dur time.Duration) (result, error) {
	res := result{Mode: mode}
	var once func(*net.Conn) error
	switch mode {
	case "rr":
		once = func(c *net.Conn) error { return rr(addr, c) }
	case "crr":
		once = func(*net.Conn) error { return crr(addr) }
	case "crr-server":
		once = func(*net.Conn) error { return crrServer(addr) }
	case "dial":
		c, err := net.DialTimeout("tcp", addr, dialTimeout)
		if err != nil {
			return res, err
		}
		c.Close()
		res.Transactions = 1
		return res, nil
	default:
		return res, fmt.Errorf("unknown mode %q (want rr, crr, crr-server or dial)", mode)
	}
	var conn net.Conn
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	start := time.Now()
	deadline := start.Add(dur)
	lat := make([]time.Duration, 0, 1<<16)
	for t0 := start; t0.Before(deadline); {
		err := once(&conn)
		t1 := time.Now()
		if err != nil {
			if res.Errors == 0 {
				res.FirstError = err.Error()
			}
			res.Errors++
			if res.Errors > 100 && res.Transactions == 0 {
				break // Nothing works: do not spin until the deadline.
			}
			t0 = t1
			continue
		}
		lat = append(lat, t1.Sub(t0))
		res.Transactions++
		t0 = t1
	}
	res.Seconds = time.Since(start).Seconds()
	res.Rate = float64(res.Transactions) / res.Seconds
	res.P50, res.P99 = percentile(lat, 50), percentile(lat, 99)
	return res, nil
}

// percentile returns the p-th percentile of d (nearest rank) in
// microseconds; 0 for none. It sorts d.
func percentile(d []time.Duration, p int) float64 {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	i := (len(d)*p + 99) / 100 // ceil(len·p/100), the nearest rank
	return float64(d[max(i, 1)-1]) / float64(time.Microsecond)
}

// rr does one 1-byte round trip on *c, dialling it first if needed; on an
// error it drops the connection so that the next call dials a new one.
func rr(addr string, c *net.Conn) error {
	if *c == nil {
		nc, err := net.DialTimeout("tcp", addr, dialTimeout)
		if err != nil {
			return err
		}
		*c = nc
	}
	if err := exchange(*c, rrByte); err != nil {
		(*c).Close()
		*c = nil
		return err
	}
	return nil
}

// crr connects, does one round trip and closes, as netperf's TCP_CRR does:
// the client closes first, so TIME_WAIT lands on the client's side (run.sh
// widens the ephemeral port range and allows tcp_tw_reuse there).
func crr(addr string) error {
	c, err := net.DialTimeout("tcp", addr, dialTimeout)
	if err != nil {
		return err
	}
	defer c.Close()
	return exchange(c, crrByte)
}

// crrServer is crr with the server closing first, as an HTTP/1.0 server
// does: TIME_WAIT lands on the server's side, and on the side of whatever
// proxies the client's connection, which must still take the client's
// next connection from the same port at once (masq issue #16).
func crrServer(addr string) error {
	c, err := net.DialTimeout("tcp", addr, dialTimeout)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := exchange(c, crrServerByte); err != nil {
		return err
	}
	var b [1]byte
	if n, err := c.Read(b[:]); err != io.EOF {
		return fmt.Errorf("after the echo: read %d bytes, %v; want the server's EOF", n, err)
	}
	return nil
}

// exchange writes b and reads the 1-byte echo, within dialTimeout.
func exchange(c net.Conn, b byte) error {
	if err := c.SetDeadline(time.Now().Add(dialTimeout)); err != nil {
		return err
	}
	buf := [1]byte{b}
	if _, err := c.Write(buf[:]); err != nil {
		return err
	}
	if _, err := io.ReadFull(c, buf[:]); err != nil {
		return err
	}
	if buf[0] != b {
		return fmt.Errorf("echo %q, want %q", buf[0], b)
	}
	return nil
}
