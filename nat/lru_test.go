package nat

import (
	"testing"
	"time"
)

func TestLRUOldest(t *testing.T) {
	type step struct {
		before func(m map[string]int64) // changes the set before the pick
		want   string                   // "" means none can be chosen
	}
	touch := func(k string, at int64) func(map[string]int64) {
		return func(m map[string]int64) { m[k] = at }
	}
	remove := func(k string) func(map[string]int64) {
		return func(m map[string]int64) { delete(m, k) }
	}
	tests := []struct {
		name    string
		set     map[string]int64
		exclude string
		steps   []step
	}{
		{"empty", map[string]int64{}, "", []step{{nil, ""}}},
		{"oldest first", map[string]int64{"a": 3, "b": 1, "c": 2}, "",
			[]step{{nil, "b"}, {nil, "c"}, {nil, "a"}, {nil, ""}}},
		{"used since the snapshot goes last", map[string]int64{"a": 1, "b": 2, "c": 3}, "",
			[]step{{nil, "a"}, {touch("b", 10), "c"}, {nil, "b"}}},
		{"added since the snapshot comes after the untouched", map[string]int64{"a": 1, "b": 2}, "",
			[]step{{nil, "a"}, {touch("d", 5), "b"}, {nil, "d"}}},
		{"removed since the snapshot is skipped", map[string]int64{"a": 1, "b": 2, "c": 3}, "",
			[]step{{nil, "a"}, {remove("b"), "c"}, {nil, ""}}},
		{"excluded is never chosen", map[string]int64{"a": 1, "b": 2}, "a",
			[]step{{nil, "b"}, {nil, ""}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var l lru[string]
			m := tt.set
			live := func(k string) (int64, bool) {
				at, ok := m[k]
				return at, ok && k != tt.exclude
			}
			all := func(yield func(string, int64) bool) {
				for k, at := range m {
					if !yield(k, at) {
						return
					}
				}
			}
			for i, s := range tt.steps {
				if s.before != nil {
					s.before(m)
				}
				got, ok := l.oldest(live, all)
				if !ok {
					got = ""
				}
				if got != s.want {
					t.Fatalf("pick %d: got %q, want %q", i, got, s.want)
				}
				delete(m, got) // chosen: evicted
			}
		})
	}
}

func TestOSReleaseDue(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	const bigFlows = releaseThreshold/flowBytes + 1 // ended flows that free more than the threshold
	type sweep struct {
		at          time.Duration // since t0
		flows, peer int           // what the sweep before this one freed
		want        bool
	}
	tests := []struct {
		name   string
		sweeps []sweep
	}{
		{"nothing freed", []sweep{{0, 0, 0, false}}},
		{"little freed", []sweep{{0, 10, 100, false}}},
		{"many flows freed", []sweep{{0, bigFlows, 0, true}}},
		{"many destinations freed", []sweep{{0, 0, releaseThreshold/peerBytes + 1, true}}},
		{"churn below the threshold never adds up",
			[]sweep{{0, bigFlows / 2, 0, false}, {time.Second, bigFlows / 2, 0, false}, {2 * time.Second, bigFlows / 2, 0, false}}},
		{"at most once per interval, then the pending release",
			[]sweep{{0, bigFlows, 0, true}, {time.Second, bigFlows, 0, false}, {releaseInterval, 0, 0, true}, {releaseInterval + time.Second, 0, 0, false}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r osRelease
			for i, s := range tt.sweeps {
				r.freed(s.flows, s.peer)
				if got := r.due(t0.Add(s.at)); got != s.want {
					t.Fatalf("sweep %d: due = %v, want %v", i, got, s.want)
				}
			}
		})
	}
}
