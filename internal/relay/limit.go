package relay

import "sync/atomic"

// Limit bounds the TCP connections, outbound and inbound, being dialled
// or established. It is safe for concurrent use.
type Limit struct {
	max     uint64
	open    atomic.Uint64
	limited atomic.Uint64
}

// NewLimit returns a bound of max connections.
func NewLimit(max int) *Limit { return &Limit{max: uint64(max)} }

// Reserve takes a place for a connection; false (counted) means none is
// left. Release gives a place back.
func (l *Limit) Reserve() bool {
	if l.open.Add(1) > l.max {
		l.open.Add(^uint64(0))
		l.limited.Add(1)
		return false
	}
	return true
}

// Release gives back a place Reserve took.
func (l *Limit) Release() { l.open.Add(^uint64(0)) }

// Limited returns how many connections Reserve turned down.
func (l *Limit) Limited() uint64 { return l.limited.Load() }

// Open returns how many connections hold a place.
func (l *Limit) Open() int { return int(l.open.Load()) }

// Max returns the bound.
func (l *Limit) Max() int { return int(l.max) }
