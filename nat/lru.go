package nat

import (
	"iter"
	"slices"
)

// lru yields the least recently used of a set of entries whose use is
// recorded as a timestamp (an atomic store on the packet path), without
// any lock or list update per use. It keeps a snapshot of the entries
// sorted oldest first and hands them out in that order, skipping those
// used or removed since the snapshot; when the snapshot runs out it takes
// a new one.
//
// The answer is exact, not approximate: an entry not used since the
// snapshot keeps its timestamp, which is older than that of any entry used
// or added since, so the first untouched, still-present entry of the
// snapshot is the least recently used of all. A snapshot costs a sort of
// the set, O(n log n), and serves up to n evictions. lru is not safe for
// concurrent use: its owner's lock guards it.
type lru[T comparable] struct {
	queue []stamped[T] // the snapshot, oldest first
	next  int          // queue[next:] are still candidates
}

// stamped is an entry and its timestamp when the snapshot was taken.
type stamped[T comparable] struct {
	v  T
	at int64
}

// oldest returns the least recently used entry for which live reports its
// current timestamp (ok false: removed, or not to be chosen), taking a
// snapshot of all when the last one is used up. It reports false when no
// entry can be chosen.
func (l *lru[T]) oldest(live func(T) (at int64, ok bool), all iter.Seq2[T, int64]) (T, bool) {
	for pass := 0; pass < 2; pass++ {
		for l.next < len(l.queue) {
			c := l.queue[l.next]
			l.queue[l.next] = stamped[T]{} // hold no reference to a chosen or stale entry
			l.next++
			if at, ok := live(c.v); ok && at == c.at {
				return c.v, true
			}
		}
		l.snapshot(all)
	}
	var zero T
	return zero, false
}

// snapshot replaces the queue with all entries, oldest first.
func (l *lru[T]) snapshot(all iter.Seq2[T, int64]) {
	l.queue, l.next = l.queue[:0], 0
	for v, at := range all {
		l.queue = append(l.queue, stamped[T]{v, at})
	}
	slices.SortFunc(l.queue, func(a, b stamped[T]) int {
		switch {
		case a.at < b.at:
			return -1
		case a.at > b.at:
			return 1
		}
		return 0
	})
}

// reset drops the snapshot and its memory.
func (l *lru[T]) reset() { l.queue, l.next = nil, 0 }
