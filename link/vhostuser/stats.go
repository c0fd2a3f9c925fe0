package vhostuser

import (
	"sync/atomic"

	"github.com/masqnet/masq/link"
)

// Stats counts what the link dropped and why: a frame dropped anywhere
// is counted, never silent.
type Stats struct {
	// FromGuestBadChain counts frames from the guest dropped because
	// their descriptor chain broke a rule: an index beyond the queue, a
	// loop, a device-writable or indirect descriptor, an address outside
	// guest memory, a length beyond any frame.
	FromGuestBadChain uint64
	// FromGuestMalformed counts frames from the guest too short for the
	// virtio-net and Ethernet headers.
	FromGuestMalformed uint64
	// FromGuestBadChecksum counts frames from the guest dropped because
	// a checksum nothing vouched for was wrong.
	FromGuestBadChecksum uint64
	// ToGuestNoBuffers counts frames to the guest dropped because the
	// guest offered no receive buffer (or none large enough), as a NIC
	// with a full queue drops them.
	ToGuestNoBuffers uint64
	// ToGuestBadChain counts frames to the guest dropped because a
	// receive buffer's chain broke a rule (as FromGuestBadChain).
	ToGuestBadChain uint64
	// ToGuestNoOffload counts frames to the guest dropped because they
	// need an offload (TSO, a partial checksum) the guest did not
	// negotiate: TCP connections made under a guest that did.
	ToGuestNoOffload uint64
	// ToGuestNoGuest counts frames to the guest dropped because no
	// front-end had its receive queue running.
	ToGuestNoGuest uint64
	// RingErrors counts the times a queue's avail index claimed more
	// buffers than the queue holds, or named a chain head beyond it: the
	// whole batch is skipped.
	RingErrors uint64
	// Faults counts sessions ended because guest memory faulted under
	// masq (a front-end shrank a region's file after sharing it).
	Faults uint64
	// Sessions counts the front-end connections served.
	Sessions uint64
	// SessionErrors counts front-end connections ended by a protocol
	// error (a malformed message, a memory table that cannot be mapped).
	SessionErrors uint64
}

// counters is Stats kept with atomics.
type counters struct {
	fromGuestBadChain, fromGuestMalformed, fromGuestBadChecksum atomic.Uint64
	toGuestNoBuffers, toGuestBadChain, toGuestNoOffload         atomic.Uint64
	toGuestNoGuest, ringErrors, sessions, sessionErrors, faults atomic.Uint64
}

func (c *counters) snapshot() Stats {
	return Stats{
		FromGuestBadChain:    c.fromGuestBadChain.Load(),
		FromGuestMalformed:   c.fromGuestMalformed.Load(),
		FromGuestBadChecksum: c.fromGuestBadChecksum.Load(),
		ToGuestNoBuffers:     c.toGuestNoBuffers.Load(),
		ToGuestBadChain:      c.toGuestBadChain.Load(),
		ToGuestNoOffload:     c.toGuestNoOffload.Load(),
		ToGuestNoGuest:       c.toGuestNoGuest.Load(),
		RingErrors:           c.ringErrors.Load(),
		Sessions:             c.sessions.Load(),
		SessionErrors:        c.sessionErrors.Load(),
		Faults:               c.faults.Load(),
	}
}

// Stats returns the drops the link counted.
func (e *Endpoint) Stats() Stats { return e.stats.snapshot() }

// LinkStats returns the drops in the form every guest link reports
// (link.LogStats): a full or missing receive queue as TxQueueFull, a bad
// chain or offload to the guest as TxErrors, what the guest sent wrong as
// RxMalformed.
func (e *Endpoint) LinkStats() link.Stats {
	s := e.Stats()
	return link.Stats{
		TxQueueFull:   s.ToGuestNoBuffers,
		TxErrors:      s.ToGuestBadChain + s.ToGuestNoOffload,
		TxNoGuest:     s.ToGuestNoGuest,
		RxMalformed:   s.FromGuestBadChain + s.FromGuestMalformed + s.RingErrors,
		RxBadChecksum: s.FromGuestBadChecksum,
	}
}
