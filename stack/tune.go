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
)

// tuneTCP turns on SACK (gVisor's default is off; without it a burst lost
// at the guest's tap queue costs a retransmission timeout) and receive
// buffer moderation, and raises the buffer bounds.
func tuneTCP(ns *stack.Stack) error {
	opts := []tcpip.SettableTransportProtocolOption{
		new(tcpip.TCPSACKEnabled),
		new(tcpip.TCPModerateReceiveBufferOption),
		&tcpip.TCPReceiveBufferSizeRangeOption{Min: tcpBufMin, Default: tcpBufDefault, Max: tcpRecvBufMax},
		&tcpip.TCPSendBufferSizeRangeOption{Min: tcpBufMin, Default: tcpBufDefault, Max: tcpSendBufMax},
	}
	*opts[0].(*tcpip.TCPSACKEnabled) = true
	*opts[1].(*tcpip.TCPModerateReceiveBufferOption) = true
	for _, o := range opts {
		if err := ns.SetTransportProtocolOption(tcp.ProtocolNumber, o); err != nil {
			return fmt.Errorf("tcp option %T: %s", o, err)
		}
	}
	return nil
}
