package dhcp

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"
)

func TestNextAdvert(t *testing.T) {
	for _, tt := range []struct {
		sent int
		max  time.Duration
		r    float64
		want time.Duration
	}{
		{1, 200 * time.Second, 0.5, initialInterval},
		{2, 200 * time.Second, 0.9, initialInterval},
		{2, 2 * time.Second, 0, 2 * time.Second}, // never slower than the maximum
		{3, 300 * time.Second, 0, 100 * time.Second},
		{3, 300 * time.Second, 0.5, 200 * time.Second},
		{9, 300 * time.Second, 0.999999, 300*time.Second - 200*time.Microsecond},
	} {
		got := nextAdvert(tt.sent, tt.max, tt.r)
		if d := got - tt.want; d < -time.Millisecond || d > time.Millisecond {
			t.Errorf("nextAdvert(%d, %v, %v) = %v, want %v", tt.sent, tt.max, tt.r, got, tt.want)
		}
	}
}

// TestAdvertiserRun: one advertisement at start, a solicitation right
// after it is answered no sooner than minDelayBetweenRAs, and Run returns
// when ctx ends.
func TestAdvertiserRun(t *testing.T) {
	var mu sync.Mutex
	var sent []time.Time
	want, err := BuildRA(testRAConfig())
	if err != nil {
		t.Fatal(err)
	}
	a, err := NewAdvertiser(testRAConfig(), func(msg []byte) error {
		if !bytes.Equal(msg, want) {
			t.Errorf("sent %x, want %x", msg, want)
		}
		msg[0] = 0 // the caller may write into it (the checksum)
		mu.Lock()
		sent = append(sent, time.Now())
		mu.Unlock()
		return nil
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	start := time.Now()
	go func() { a.Run(ctx); close(done) }()
	time.Sleep(100 * time.Millisecond)
	a.Solicited()
	a.Solicited() // folded into one answer
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(sent)
		mu.Unlock()
		if n >= 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if len(sent) != 2 {
		t.Fatalf("%d advertisements in %v, want 2", len(sent), time.Since(start))
	}
	if gap := sent[1].Sub(sent[0]); gap < minDelayBetweenRAs-10*time.Millisecond || gap > initialInterval {
		t.Errorf("solicited advertisement %v after the first, want %v", gap, minDelayBetweenRAs)
	}
}
