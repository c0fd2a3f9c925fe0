package main

import (
	"net"
	"testing"
	"time"
)

func TestClientModes(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go serve(ln)
	for _, mode := range []string{"rr", "crr", "crr-server", "dial"} {
		res, err := runClient(ln.Addr().String(), mode, 100*time.Millisecond)
		if err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
		if res.Transactions == 0 || res.Errors != 0 {
			t.Errorf("%s: %+v, want transactions and no errors", mode, res)
		}
	}
}

func TestClientRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // Nobody listens there now: every dial is refused.
	res, err := runClient(addr, "rr", 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if res.Transactions != 0 || res.Errors == 0 || res.FirstError == "" {
		t.Errorf("%+v, want errors and no transaction", res)
	}
}
