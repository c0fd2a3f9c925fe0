package link

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"
)

// Stats counts the frames the guest's link dropped, each way: a frame
// dropped anywhere is counted, never silent.
type Stats struct {
	// TxQueueFull counts frames to the guest dropped because the link's
	// queue was full (the tap answered EAGAIN), as a NIC drops them.
	TxQueueFull uint64
	// TxErrors counts frames to the guest the link failed to write for
	// any other reason.
	TxErrors uint64
	// RxMalformed counts frames from the guest too short for their
	// headers.
	RxMalformed uint64
	// RxBadChecksum counts frames from the guest dropped because an IP,
	// TCP, UDP or ICMP checksum was wrong.
	RxBadChecksum uint64
	// TxNoGuest counts frames to the guest dropped because no guest was
	// connected (a Socket between connections).
	TxNoGuest uint64
	// RxBadLength counts guest connections closed because a frame's
	// length was 0 or beyond the link's largest frame (a Socket).
	RxBadLength uint64
	// GuestsRefused counts connections refused because a guest was
	// already connected (a Socket).
	GuestsRefused uint64
}

// counters is Stats kept with atomics.
type counters struct {
	txQueueFull, txErrors, rxMalformed, rxBadChecksum atomic.Uint64
	txNoGuest, rxBadLength, guestsRefused             atomic.Uint64
}

// snapshot returns the counters' values.
func (c *counters) snapshot() Stats {
	return Stats{
		TxQueueFull:   c.txQueueFull.Load(),
		TxErrors:      c.txErrors.Load(),
		RxMalformed:   c.rxMalformed.Load(),
		RxBadChecksum: c.rxBadChecksum.Load(),
		TxNoGuest:     c.txNoGuest.Load(),
		RxBadLength:   c.rxBadLength.Load(),
		GuestsRefused: c.guestsRefused.Load(),
	}
}

// Stats returns the drops the link counted.
func (l *Vnet) Stats() Stats { return l.stats.snapshot() }

// statsInterval is how often LogStats logs the counters, when they
// changed: a drop shows up within a minute, without a line per frame.
const statsInterval = time.Minute

// LogStats logs the drops of a link one line at a time, every
// statsInterval in which they changed and once more when ctx ends, then
// returns. A link that counts nothing (gVisor's fdbased endpoint, which
// drops nothing silently beyond what the stack counts) needs none.
func LogStats(ctx context.Context, stats func() Stats, log *slog.Logger) {
	tick := time.NewTicker(statsInterval)
	defer tick.Stop()
	var last Stats
	for {
		select {
		case <-ctx.Done():
			logStats(stats(), "link at stop", log)
			return
		case <-tick.C:
			if s := stats(); s != last {
				logStats(s, "link", log)
				last = s
			}
		}
	}
}

func logStats(s Stats, msg string, log *slog.Logger) {
	log.Info(msg, "tx_queue_full", s.TxQueueFull, "tx_errors", s.TxErrors,
		"rx_malformed", s.RxMalformed, "rx_bad_checksum", s.RxBadChecksum,
		"tx_no_guest", s.TxNoGuest, "rx_bad_length", s.RxBadLength, "guests_refused", s.GuestsRefused)
}
