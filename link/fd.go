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
	// The guest's kernel fills in checksums; verifying them costs a pass
	// over each payload but keeps corrupted frames out.
	ep, err := newFdbased(fd, mtu, closed, fdbased.Options{RXChecksumOffload: false, TXChecksumOffload: false})
	if err != nil {
		return nil, fmt.Errorf("link on fd %d: %w", fd, err)
	}
	return ep, nil
}

// newFdbased returns gVisor's fdbased endpoint on fd with opts, adding
// what masq's fdbased links share: Ethernet frames of mtu, closed called
// when reading fd fails, and one processor.
func newFdbased(fd int, mtu uint32, closed func(error), opts fdbased.Options) (stack.LinkEndpoint, error) {
	opts.FDs, opts.MTU, opts.EthernetHeader = []int{fd}, mtu, true
	if closed != nil {
		opts.ClosedFunc = func(err tcpip.Error) { closed(errors.New(err.String())) }
	}
	// One processor: frames are handled on the goroutine that read them.
	// With more, fdbased queues frames to processor goroutines without
	// bound, so a guest outrunning the pod (a UDP flood) grew masq by
	// hundreds of MiB; inline, a slow pod pushes back on the tap (or
	// socket), whose queue drops the excess as a NIC would.
	opts.ProcessorsPerChannel = 1
	return fdbased.New(&opts)
}
