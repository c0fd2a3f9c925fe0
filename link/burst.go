package link

import "sync/atomic"

// BurstNotifier is what a link embeds to report the end of each burst of
// frames its reader delivers (OnBurstEnd). The zero value reports to no
// one.
type BurstNotifier struct {
	fn atomic.Pointer[func()]
}

// OnBurstEnd makes the link's reader call fn at the end of each burst of
// frames, when it has delivered what it found waiting: a tap found empty
// (and every MaxBurstFrames frames while more keep coming), one read of a
// socket (up to 256 KiB of frames), one round of a virtqueue (up to its
// size in frames). fn runs on the reader
// goroutine between deliveries, so it may finish what the burst's frames
// began (the NAT sends a burst's datagrams of a flow together), and must
// not block. Set it before the stack handles packets: a frame delivered
// before is covered only by the next burst's end.
func (b *BurstNotifier) OnBurstEnd(fn func()) { b.fn.Store(&fn) }

// EndBurst calls the OnBurstEnd function, if any. The link's reader calls
// it.
func (b *BurstNotifier) EndBurst() {
	if fn := b.fn.Load(); fn != nil {
		(*fn)()
	}
}

// MaxBurstFrames bounds a tap's burst: its reader ends one after this many
// frames even while more keep coming, so whatever waits for a burst's end
// waits for at most that many frames (4 MiB of TSO segments).
const MaxBurstFrames = 64
