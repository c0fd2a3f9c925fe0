package link

import (
	"errors"
	"fmt"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/link/fdbased"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// NewFD returns a link endpoint that reads and writes Ethernet frames on
// fd: a tap device opened without IFF_VNET_HDR, or one end of an AF_UNIX
// SOCK_SEQPACKET socketpair in tests. It makes fd non-blocking but does not
// take ownership of it: fd must stay open until the Stack using the link
// has been closed. closed, if not nil, is called from the link's reader
// when fd fails (the tap was deleted, the peer socket closed).
func NewFD(fd int, mtu uint32, closed func(error)) (stack.LinkEndpoint, error) {
	var onClose func(tcpip.Error)
	if closed != nil {
		onClose = func(err tcpip.Error) { closed(errors.New(err.String())) }
	}
	ep, err := fdbased.New(&fdbased.Options{
		FDs:            []int{fd},
		MTU:            mtu,
		EthernetHeader: true,
		ClosedFunc:     onClose,
		// One processor: frames are handled on the goroutine that read
		// them. With more, fdbased queues frames to processor goroutines
		// without bound, so a guest outrunning the pod (a UDP flood)
		// grew masq by hundreds of MiB; inline, a slow pod pushes back
		// on the tap, whose queue drops the excess as a NIC would.
		ProcessorsPerChannel: 1,
		// The guest's kernel fills in checksums; verifying them costs a
		// pass over each payload but keeps corrupted frames out.
		RXChecksumOffload: false,
		TXChecksumOffload: false,
	})
	if err != nil {
		return nil, fmt.Errorf("link on fd %d: %w", fd, err)
	}
	return ep, nil
}
