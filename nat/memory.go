package nat

import (
	"runtime/debug"
	"time"
)

// osRelease decides when to hand memory freed by ended flows back to the
// operating system. Go keeps freed heap for reuse: it collects garbage
// only as the program allocates (or every 2 minutes), and returns free
// pages only gradually. After a guest's flood of flows expires an idle
// masq would keep its peak for minutes (421 MB 2.5 minutes after a flood
// of 8192 flows, before the bounds), and in a pod with a memory limit the
// peak is what the OOM killer counts. So after sweeps that freed a lot,
// masq collects and returns it at once (debug.FreeOSMemory), at most once
// per releaseInterval. osRelease is the decision alone, over values.
type osRelease struct {
	pending int64     // bytes freed by sweeps since the last release (estimated)
	last    time.Time // when memory was last returned; zero: never
}

const (
	// releaseThreshold is how much a sweep must free before masq returns
	// memory: 4 MiB is large against masq's idle 10 MiB and small
	// against a pod's memory limit, half of what a full destination
	// table holds (8 MiB), and above what a guest resolving 100 names a
	// second ends per sweep (750 flows of 4 KiB, 3 MiB).
	releaseThreshold = 4 << 20

	// releaseInterval rate-limits returns: each is a full collection
	// (milliseconds for masq's heap) and gives back pages masq may soon
	// fault in again, so a guest flooding and idling in turn costs one
	// per minute at most.
	releaseInterval = time.Minute

	// flowBytes and peerBytes estimate what an ended flow and one of its
	// destination entries free, as measured with the flood test
	// (TestUDPFloodMemoryBounded) and DefaultMaxUDPFlows says.
	flowBytes = 4 << 10
	peerBytes = 130
)

// freed records that a sweep ended flows holding peers destination
// entries. What an earlier sweep freed below the threshold is forgotten:
// a guest's steady churn of flows is reused by new ones and never adds up
// to a release; a flood ending is many flows in one or two sweeps.
func (r *osRelease) freed(flows, peers int) {
	if r.pending < releaseThreshold {
		r.pending = 0
	}
	r.pending += int64(flows)*flowBytes + int64(peers)*peerBytes
}

// due reports whether to return memory at now, and if so starts counting
// afresh.
func (r *osRelease) due(now time.Time) bool {
	if r.pending < releaseThreshold || (!r.last.IsZero() && now.Sub(r.last) < releaseInterval) {
		return false
	}
	r.pending, r.last = 0, now
	return true
}

// sweep ends idle datagram flows at now and returns how many. When the
// sweeps before it freed enough, it first returns their memory to the
// operating system: by the next sweep the ended flows' goroutines have
// exited and their memory is garbage.
func (n *NAT) sweep(now time.Time) int {
	n.sweepMu.Lock()
	defer n.sweepMu.Unlock()
	if n.release.due(now) {
		debug.FreeOSMemory()
		n.stats.memoryReleased.Add(1)
		n.log.Debug("returned freed memory to the operating system")
	}
	flows, peers := n.expire(now)
	n.release.freed(flows, peers)
	return flows
}
