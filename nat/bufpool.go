package nat

import "sync"

// copyBufferSize is the size of the pooled copy buffers: 64 KiB, one
// maximal TCP segment of the largest MTU, so jumbo flows copy a segment per
// system call.
const copyBufferSize = 64 << 10

// bufferPool lends every flow its copy buffers, copyBufferSize bytes each.
// Flows take one only while data is ready and give it back at once, so an
// idle flow holds none. It is safe for concurrent use.
type bufferPool struct{ pool sync.Pool }

func newBufferPool() *bufferPool {
	p := &bufferPool{}
	p.pool.New = func() any { b := make([]byte, copyBufferSize); return &b }
	return p
}

// get lends a buffer; put gives it back.
func (p *bufferPool) get() *[]byte  { return p.pool.Get().(*[]byte) }
func (p *bufferPool) put(b *[]byte) { p.pool.Put(b) }
