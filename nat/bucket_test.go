package nat

import (
	"testing"
	"time"
)

func TestTokenBucket(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	b := newTokenBucket(10, 3)
	for _, c := range []struct {
		at   time.Duration
		want bool
	}{
		{0, true}, {0, true}, {0, true}, {0, false}, // the burst, then empty
		{50 * time.Millisecond, false}, // half a token
		{100 * time.Millisecond, true}, // one token
		{100 * time.Millisecond, false},
		{10 * time.Second, true}, {10 * time.Second, true}, {10 * time.Second, true}, // refilled to the burst only
		{10 * time.Second, false},
		{5 * time.Second, false}, // a clock going back gives nothing
	} {
		if got := b.allow(t0.Add(c.at)); got != c.want {
			t.Errorf("allow at %v = %v, want %v", c.at, got, c.want)
		}
	}
}
