package stack

import "sync/atomic"

// LinkStats counts the frames the guest's link dropped, each way: a frame
// dropped anywhere is counted, never silent.
type LinkStats struct {
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
}

// linkCounters is LinkStats kept with atomics.
type linkCounters struct {
	txQueueFull, txErrors, rxMalformed, rxBadChecksum atomic.Uint64
}

// snapshot returns the counters' values.
func (c *linkCounters) snapshot() LinkStats {
	return LinkStats{
		TxQueueFull:   c.txQueueFull.Load(),
		TxErrors:      c.txErrors.Load(),
		RxMalformed:   c.rxMalformed.Load(),
		RxBadChecksum: c.rxBadChecksum.Load(),
	}
}

// countingLink is a link that counts its drops.
type countingLink interface {
	linkStats() LinkStats
}

// linkStats implements countingLink.
func (l *vnetLink) linkStats() LinkStats { return l.stats.snapshot() }

// LinkStats returns the drops counted by the guest's link. A link that
// keeps no counters (gVisor's fdbased, which drops nothing silently
// beyond what the stack counts) reports zeros.
func (s *Stack) LinkStats() LinkStats {
	if c, ok := s.link.(countingLink); ok {
		return c.linkStats()
	}
	return LinkStats{}
}
