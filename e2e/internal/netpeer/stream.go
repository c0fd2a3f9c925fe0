package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"time"
)

// Streams in small writes: one side writes -size bytes -chunk bytes at a
// time with TCP_NODELAY (as an interactive protocol does), the other
// reads them all; each prints the byte count and sha256 of what it wrote
// or read, so the test can compare the two.
//
//	netpeer send -listen ADDR -size N -chunk C   write N bytes to each client, then close
//	netpeer recv -listen ADDR                    read each client to EOF, answer "N SHA256"
//	netpeer pull -to ADDR                        read to EOF, print got=N sha256=H
//	netpeer push -to ADDR -size N -chunk C       write N bytes, half-close, print the answer

// writeStream writes size pseudo-random bytes to c in writes of chunk
// bytes and returns their sha256.
func writeStream(c net.Conn, size, chunk int) (string, error) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	rng := rand.NewChaCha8([32]byte{})
	h := sha256.New()
	buf := make([]byte, chunk)
	for left := size; left > 0; left -= len(buf) {
		buf = buf[:min(chunk, left)]
		_, _ = rng.Read(buf)
		h.Write(buf)
		if _, err := c.Write(buf); err != nil {
			return "", fmt.Errorf("after %d bytes: %w", size-left, err)
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// readStream reads c to EOF and returns the byte count and sha256.
func readStream(c net.Conn) (int64, string, error) {
	var h hash.Hash = sha256.New()
	n, err := io.Copy(h, c)
	return n, hex.EncodeToString(h.Sum(nil)), err
}

func serveSend(addrs []string, size, chunk int) error {
	return serve(listenTCP(addrs), func(l net.Listener) error {
		for {
			c, err := l.Accept()
			if err != nil {
				return err
			}
			go func() {
				defer c.Close()
				sum, err := writeStream(c, size, chunk)
				if err != nil {
					say("send-error %v", err)
					return
				}
				say("sent n=%d sha256=%s", size, sum)
			}()
		}
	})
}

func serveRecv(addrs []string) error {
	return serve(listenTCP(addrs), func(l net.Listener) error {
		for {
			c, err := l.Accept()
			if err != nil {
				return err
			}
			go func() {
				defer c.Close()
				n, sum, err := readStream(c)
				if err != nil {
					say("recv-error after %d bytes: %v", n, err)
					return
				}
				fmt.Fprintf(c, "%d %s\n", n, sum)
			}()
		}
	})
}

func pull(to string, timeout time.Duration) error {
	c, err := net.DialTimeout("tcp", to, timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	start := time.Now()
	n, sum, err := readStream(c)
	say("got=%d sha256=%s elapsed=%s", n, sum, time.Since(start))
	return err
}

func push(to string, size, chunk int, timeout time.Duration) error {
	c, err := net.DialTimeout("tcp", to, timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	start := time.Now()
	sum, err := writeStream(c, size, chunk)
	if err != nil {
		return err
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return err
	}
	reply, err := io.ReadAll(c)
	if err != nil {
		return err
	}
	f := strings.Fields(string(reply))
	if len(f) != 2 {
		return errors.New("no answer from the receiver")
	}
	say("sent=%d sha256=%s got=%s got_sha256=%s elapsed=%s", size, sum, f[0], f[1], time.Since(start))
	return nil
}
