package stack

import (
	"fmt"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
)

// TCP tuning of the guest-facing stack. gVisor's defaults suit a sandboxed
// application, not a router carrying a VM's bulk flows.
const (
	// tcpRecvBufMax and tcpSendBufMax bound the per-connection buffers
	// that TCP's auto-tuning may grow to (tailscale's values): a
	// bandwidth-delay product of a few Gbit/s at LAN latencies, while an
	// idle connection stays at the minimum.
	tcpRecvBufMax = 8 << 20
	tcpSendBufMax = 6 << 20
	tcpBufMin     = 4 << 10
	tcpBufDefault = 1 << 20

	// tcpTimeWait is how long an endpoint that closed first toward the
	// guest keeps its 4-tuple (issue #16). gVisor's 60 s TIME_WAIT guards
	// against delayed segments of an old connection, which a point-to-point
	// link to the guest cannot hold: its frames arrive in order within
	// microseconds. And it costs a stall: when a server closes first and
	// the guest then reuses the port for the same destination, its SYN
	// meets the TIME_WAIT endpoint, not the forwarder. gVisor would hand
	// such a SYN (RFC 1122 4.2.2.13) only to a listening endpoint, which
	// masq has none of, so it drops it and the guest retransmits until
	// TIME_WAIT ends. Zero releases the 4-tuple as soon as the last ACK
	// is sent. All that is lost is the re-ACK of a guest FIN retransmitted
	// because that ACK was lost (at least 200 ms later, the guest's
	// minimum RTO, so no short TIME_WAIT would keep it either): the
	// forwarder answers it with a RST, which closes the guest's LAST_ACK
	// socket, already closed by its application, just the same. The same
	// holds inbound: a pod client that closes first and reuses its port
	// finds its address free again in masq's stack.
	tcpTimeWait = 0
)

// tuneTCP turns on SACK (gVisor's default is off; without it a burst lost
// at the guest's tap queue costs a retransmission timeout) and receive
// buffer moderation, raises the buffer bounds, and ends TIME_WAIT at once
// (see tcpTimeWait).
func tuneTCP(ns *stack.Stack) error {
	opts := []tcpip.SettableTransportProtocolOption{
		new(tcpip.TCPSACKEnabled),
		new(tcpip.TCPModerateReceiveBufferOption),
		&tcpip.TCPReceiveBufferSizeRangeOption{Min: tcpBufMin, Default: tcpBufDefault, Max: tcpRecvBufMax},
		&tcpip.TCPSendBufferSizeRangeOption{Min: tcpBufMin, Default: tcpBufDefault, Max: tcpSendBufMax},
		new(tcpip.TCPTimeWaitTimeoutOption),
	}
	*opts[0].(*tcpip.TCPSACKEnabled) = true
	*opts[1].(*tcpip.TCPModerateReceiveBufferOption) = true
	*opts[4].(*tcpip.TCPTimeWaitTimeoutOption) = tcpTimeWait
	for _, o := range opts {
		if err := ns.SetTransportProtocolOption(tcp.ProtocolNumber, o); err != nil {
			return fmt.Errorf("tcp option %T: %s", o, err)
		}
	}
	return nil
}
