package nat

import (
	"sync"
	"time"
)

// Rate of the ICMP errors masq sends the guest, as a token bucket (RFC
// 4443 2.4(f); RFC 1812 4.3.2.8 for IPv4): Linux's defaults
// (net.ipv4.icmp_msgs_per_sec, icmp_msgs_burst). A traceroute's probes
// (16 at once by default) pass; a guest that floods closed ports or sends
// with TTL 1 cannot make masq spend its time on errors.
const (
	errorRate  = 1000 // errors per second
	errorBurst = 50
)

// tokenBucket allows rate events per second on average and burst at once.
// Time is passed in. It is safe for concurrent use.
type tokenBucket struct {
	rate, burst float64

	mu     sync.Mutex
	tokens float64   // guarded by mu
	last   time.Time // when tokens was last refilled; guarded by mu
}

// newTokenBucket returns a full bucket.
func newTokenBucket(rate, burst float64) *tokenBucket {
	return &tokenBucket{rate: rate, burst: burst, tokens: burst}
}

// allow takes a token at now, reporting false when there is none.
func (b *tokenBucket) allow(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.last.IsZero() && now.After(b.last) {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	if b.last.IsZero() || now.After(b.last) {
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
