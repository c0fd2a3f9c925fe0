// Command idleconns opens many TCP connections and holds them idle, to
// measure what idle connections cost the network implementation between
// client and server.
//
//	idleconns -s -l :7001                         serve: echo one byte, then hold
//	idleconns -c 198.18.0.1:7001 -n 10000 -hold 60s
//
// The client dials n connections (a few at a time), checks each end to end
// with a 1-byte exchange, prints one JSON line ({"opened", "failed",
// "seconds", "first_error"}) once all are open, and holds them until -hold
// passes or it is signalled. It exits 1 if none opened.
package main

import (
	"encoding/json"
	"flag"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

// parallel is how many dials are in flight at once: enough to hide one
// round trip, few enough not to look like a SYN flood to the implementation.
const parallel = 32

// dialTimeout bounds one connect and its exchange.
const dialTimeout = 5 * time.Second

type result struct {
	Opened     int     `json:"opened"`
	Failed     int     `json:"failed"`
	Seconds    float64 `json:"seconds"`
	FirstError string  `json:"first_error,omitempty"`
}

func main() {
	serve := flag.Bool("s", false, "serve")
	listen := flag.String("l", ":7001", "address to serve on")
	addr := flag.String("c", "", "server address to open connections to")
	n := flag.Int("n", 10000, "connections to open")
	hold := flag.Duration("hold", time.Minute, "how long to hold them open")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("idleconns: ")
	switch {
	case *serve:
		log.Fatal(runServer(*listen))
	case *addr != "":
		conns, res := open(*addr, *n)
		if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
			log.Fatal(err)
		}
		if res.Opened == 0 {
			os.Exit(1)
		}
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		select {
		case <-sig:
		case <-time.After(*hold):
		}
		for _, c := range conns {
			c.Close()
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
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			var b [1]byte
			if _, err := io.ReadFull(c, b[:]); err != nil {
				return
			}
			if _, err := c.Write(b[:]); err != nil {
				return
			}
			io.Copy(io.Discard, c) // Hold until the client closes.
		}()
	}
}

// open dials n connections to addr, parallel at a time.
func open(addr string, n int) ([]net.Conn, result) {
	start := time.Now()
	var (
		mu    sync.Mutex
		conns []net.Conn
		res   result
		wg    sync.WaitGroup
	)
	next := make(chan struct{})
	for range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				c, err := dial(addr)
				mu.Lock()
				if err != nil {
					if res.Failed == 0 {
						res.FirstError = err.Error()
					}
					res.Failed++
				} else {
					conns = append(conns, c)
				}
				mu.Unlock()
			}
		}()
	}
	for range n {
		next <- struct{}{}
	}
	close(next)
	wg.Wait()
	res.Opened = len(conns)
	res.Seconds = time.Since(start).Seconds()
	return conns, res
}

// dial connects and exchanges one byte, so the connection is known to be
// established end to end, not only with a proxy in the middle.
func dial(addr string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, dialTimeout)
	if err != nil {
		return nil, err
	}
	b := [1]byte{'i'}
	c.SetDeadline(time.Now().Add(dialTimeout))
	if _, err = c.Write(b[:]); err == nil {
		_, err = io.ReadFull(c, b[:])
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return c, nil
}
