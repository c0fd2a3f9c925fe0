package relay

import "sync"

// CopyBufferSize is the size of the pooled copy buffers: 64 KiB, one
// maximal TCP segment of the largest MTU, so jumbo flows copy a segment per
// system call.
const CopyBufferSize = 64 << 10

// Pool lends flows their copy buffers, CopyBufferSize bytes each. Flows
// take one only while data is ready and give it back at once, so an idle
// flow holds none. It is safe for concurrent use.
type Pool struct{ pool sync.Pool }

// NewPool returns an empty pool.
func NewPool() *Pool {
	p := &Pool{}
	p.pool.New = func() any { b := make([]byte, CopyBufferSize); return &b }
	return p
}

// Get lends a buffer.
func (p *Pool) Get() *[]byte { return p.pool.Get().(*[]byte) }

// Put gives a buffer back.
func (p *Pool) Put(b *[]byte) { p.pool.Put(b) }
