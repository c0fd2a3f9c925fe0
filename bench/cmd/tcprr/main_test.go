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
		if mode != "dial" && (res.P50 <= 0 || res.P99 < res.P50) {
			t.Errorf("%s: p50 %v µs, p99 %v µs; want 0 < p50 <= p99", mode, res.P50, res.P99)
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

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 100; i >= 1; i-- {
		d = append(d, time.Duration(i)*time.Microsecond)
	}
	if p50, p99, p100 := percentile(d, 50), percentile(d, 99), percentile(d, 100); p50 != 50 || p99 != 99 || p100 != 100 {
		t.Errorf("percentiles of 1..100 µs: p50 %v, p99 %v, p100 %v; want 50, 99, 100", p50, p99, p100)
	}
	if got := percentile([]time.Duration{7 * time.Microsecond}, 99); got != 7 {
		t.Errorf("p99 of one = %v, want 7", got)
	}
	if got := percentile(nil, 99); got != 0 {
		t.Errorf("p99 of none = %v, want 0", got)
	}
}
