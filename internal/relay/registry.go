package relay

import "sync"

// Flow is an open proxied flow its owner's shutdown must abort.
type Flow interface {
	// Abort ends the flow at once (a RST to both ends, a closed socket);
	// the goroutine serving it then returns. It must be safe to call
	// more than once and concurrently.
	Abort()
}

// Registry holds the open flows and the goroutines serving them: closing
// it refuses new ones and hands back the open flows to abort, and wait
// returns once every goroutine it started or tracked has ended. It is its
// owner's list of what is open (the flow table observability will read).
// It is safe for concurrent use.
type Registry struct {
	mu     sync.Mutex
	closed bool              // no new flow may start; guarded by mu
	flows  map[Flow]struct{} // guarded by mu
	wg     sync.WaitGroup
}

// NewRegistry returns an empty, open registry.
func NewRegistry() *Registry { return &Registry{flows: make(map[Flow]struct{})} }

// Spawn runs fn on a goroutine that Wait waits for; false means the
// registry is closed and fn was not run.
func (r *Registry) Spawn(fn func()) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.wg.Go(fn)
	return true
}

// Track registers f, whose goroutine the caller runs and ends with
// Untrack; false means the registry is closed and f must not start.
func (r *Registry) Track(f Flow) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.flows[f] = struct{}{}
	r.wg.Add(1)
	return true
}

// Join counts the calling goroutine, which someone else started (gVisor's
// forwarder), as one that Wait waits for, until it calls Leave; false
// means the registry is closed and the goroutine must return at once.
func (r *Registry) Join() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.wg.Add(1)
	return true
}

// Leave ends what Join began.
func (r *Registry) Leave() { r.wg.Done() }

// Untrack is the end of a tracked flow's goroutine.
func (r *Registry) Untrack(f Flow) {
	r.mu.Lock()
	delete(r.flows, f)
	r.mu.Unlock()
	r.wg.Done()
}

// Close refuses new flows and returns the open ones, for the caller to
// abort.
func (r *Registry) Close() []Flow {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	open := make([]Flow, 0, len(r.flows))
	for f := range r.flows {
		open = append(open, f)
	}
	return open
}

// Wait returns once every spawned and tracked goroutine has ended.
func (r *Registry) Wait() { r.wg.Wait() }

// Len returns the number of open flows.
func (r *Registry) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.flows)
}
