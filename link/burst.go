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
// (and every MaxBurstFrames frames or MaxBurstBytes bytes while more keep
// coming), one read of a
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

// MaxBurstFrames and MaxBurstBytes bound a tap's burst: its reader ends
// one after this many frames or bytes of frames, whichever comes first,
// even while more keep coming. Whatever waits for a burst's end (a
// datagram held for a batch) waits behind at most that much of another
// flow's traffic: 256 KiB, four TSO segments, ~0.3 ms at 7 Gbit/s, where a
// full batch of MTU-sized datagrams (64 × 1.5 KiB) still fits.
const (
	MaxBurstFrames = 64
	MaxBurstBytes  = 256 << 10
)
