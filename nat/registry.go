package nat

import "sync"

// flow is an open proxied flow that shutdown must close.
type flow interface{ abort() }

// registry holds the open flows and the goroutines serving them: closing
// it refuses new ones and hands back the open flows to abort, and wait
// returns once every goroutine it started or tracked has ended. It is
// the NAT's list of what is open (the flow table observability will
// read). It is safe for concurrent use.
type registry struct {
	mu     sync.Mutex
	closed bool              // no new flow may start; guarded by mu
	flows  map[flow]struct{} // guarded by mu
	wg     sync.WaitGroup
}

func newRegistry() *registry { return &registry{flows: make(map[flow]struct{})} }

// spawn runs fn on a goroutine that wait waits for; false means the
// registry is closed and fn was not run.
func (r *registry) spawn(fn func()) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.wg.Go(fn)
	return true
}

// track registers f, whose goroutine the caller runs and ends with
// untrack; false means the registry is closed and f must not start.
func (r *registry) track(f flow) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.flows[f] = struct{}{}
	r.wg.Add(1)
	return true
}

// untrack is the end of a tracked flow's goroutine.
func (r *registry) untrack(f flow) {
	r.mu.Lock()
	delete(r.flows, f)
	r.mu.Unlock()
	r.wg.Done()
}

// close refuses new flows and returns the open ones, for the caller to
// abort.
func (r *registry) close() []flow {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	open := make([]flow, 0, len(r.flows))
	for f := range r.flows {
		open = append(open, f)
	}
	return open
}

// wait returns once every spawned and tracked goroutine has ended.
func (r *registry) wait() { r.wg.Wait() }

// len returns the number of open flows.
func (r *registry) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.flows)
}
