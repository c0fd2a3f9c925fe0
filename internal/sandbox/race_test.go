//go:build race

package sandbox

// raceEnabled: the race detector links cgo, under which Apply cannot
// work, so TestApply builds its child without it.
const raceEnabled = true
