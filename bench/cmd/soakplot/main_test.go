package main

import (
	"strings"
	"testing"
)

func TestJudge(t *testing.T) {
	secs := []float64{0, 600, 700, 800, 900, 1000}
	for _, c := range []struct {
		name string
		v    []float64
		flat bool
	}{
		{"flat after a climb", []float64{10, 100, 102, 98, 101, 99}, true},
		{"still climbing", []float64{10, 100, 110, 120, 130, 140}, false},
		{"a spike in the middle", []float64{10, 100, 100, 130, 100, 100}, true},
		{"a slow leak", []float64{10, 100, 103, 106, 109, 112}, false},
	} {
		v := judge(secs, c.v, 400, 0.10)
		if v.flat != c.flat || v.n != 5 {
			t.Errorf("%s: flat %v over %d samples, want %v over 5 (mean %.1f, min %.1f, max %.1f)",
				c.name, v.flat, v.n, c.flat, v.mean, v.min, v.max)
		}
	}
}

func TestRead(t *testing.T) {
	secs, ss, err := read(strings.NewReader("seconds,rss_kib,fds,threads\n0,1024,10,5\n10,2048,12,6\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(secs) != 2 || secs[1] != 10 || ss[0].v[1] != 2048 || ss[1].v[0] != 10 || ss[2].v[1] != 6 {
		t.Errorf("read %v %v %v %v", secs, ss[0].v, ss[1].v, ss[2].v)
	}
	if _, _, err := read(strings.NewReader("seconds,rss_kib,fds,threads\n0,x,1,1\n")); err == nil {
		t.Error("a bad sample was read")
	}
}
