package inbound

import (
	"sync/atomic"
	"time"
)

// Stats counts what the forwarder carried, refused and dropped.
type Stats struct {
	// TCP counts connections relayed to the guest; Refused those the
	// guest refused or never answered (their clients got a RST); Limited
	// those reset at once at the TCP bound.
	TCP, Refused, Limited uint64
	// UDP counts inbound UDP flows (client address and port); UDPLimited
	// the datagrams of new clients dropped at MaxUDPFlows; UDPSendFailed
	// the guest's answers the pod socket failed to send.
	UDP, UDPLimited, UDPSendFailed uint64
	// Paused counts times a listener rested because masq was out of file
	// descriptors.
	Paused uint64
}

// counters is Stats kept with atomics.
type counters struct {
	tcp, refused, limited, udp, udpLimited, udpSendFailed, paused atomic.Uint64
}

// Stats returns a snapshot of the counters.
func (f *Forwarder) Stats() Stats {
	c := f.stats
	return Stats{
		TCP: c.tcp.Load(), Refused: c.refused.Load(), Limited: c.limited.Load(),
		UDP: c.udp.Load(), UDPLimited: c.udpLimited.Load(), UDPSendFailed: c.udpSendFailed.Load(),
		Paused: c.paused.Load(),
	}
}

// statsInterval is how often the counters are logged, when they changed:
// drops and bounds hit show up within a minute, without a line per packet.
const statsInterval = time.Minute

// reportLoop logs the counters every statsInterval in which they changed,
// until the forwarder closes.
func (f *Forwarder) reportLoop() {
	tick := time.NewTicker(statsInterval)
	defer tick.Stop()
	var last Stats
	for {
		select {
		case <-f.ctx.Done():
			return
		case <-tick.C:
			if s := f.Stats(); s != last {
				f.logStats("inbound")
				last = s
			}
		}
	}
}

// logStats writes the counters as one line.
func (f *Forwarder) logStats(msg string) {
	s := f.Stats()
	f.log.Info(msg, "tcp", s.TCP, "refused", s.Refused, "limited", s.Limited,
		"udp", s.UDP, "udp_limited", s.UDPLimited, "udp_send_failed", s.UDPSendFailed, "paused", s.Paused)
}
