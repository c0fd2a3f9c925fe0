package memguest

import (
	"bytes"
	"fmt"
	"net/netip"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// Ping sends one ICMP echo request from the guest to dst, as a ping socket
// would, and waits up to timeout for the matching reply.
func (g *Guest) Ping(dst netip.Addr, timeout time.Duration) error {
	var wq waiter.Queue
	transport, network := icmp.ProtocolNumber4, ipv4.ProtocolNumber
	echo := make([]byte, header.ICMPv4MinimumSize+8)
	header.ICMPv4(echo).SetType(header.ICMPv4Echo)
	if dst.Is6() {
		transport, network = icmp.ProtocolNumber6, ipv6.ProtocolNumber
		echo = make([]byte, header.ICMPv6EchoMinimumSize+8)
		header.ICMPv6(echo).SetType(header.ICMPv6EchoRequest)
	}
	payload := []byte("memguest")
	copy(echo[len(echo)-8:], payload)
	ep, terr := g.Stack.NewEndpoint(transport, network, &wq)
	if terr != nil {
		return fmt.Errorf("icmp endpoint: %s", terr)
	}
	defer ep.Close()
	if terr := ep.Connect(tcpip.FullAddress{NIC: NIC, Addr: Addr(dst)}); terr != nil {
		return fmt.Errorf("connect icmp to %s: %s", dst, terr)
	}
	entry, ready := waiter.NewChannelEntry(waiter.ReadableEvents)
	wq.EventRegister(&entry)
	defer wq.EventUnregister(&entry)
	if _, terr := ep.Write(bytes.NewReader(echo), tcpip.WriteOptions{}); terr != nil {
		return fmt.Errorf("send echo to %s: %s", dst, terr)
	}
	deadline := time.After(timeout)
	for {
		var buf bytes.Buffer
		_, terr := ep.Read(&buf, tcpip.ReadOptions{})
		if terr == nil {
			if bytes.HasSuffix(buf.Bytes(), payload) {
				return nil
			}
			continue
		}
		if _, ok := terr.(*tcpip.ErrWouldBlock); !ok {
			return fmt.Errorf("read echo reply from %s: %s", dst, terr)
		}
		select {
		case <-ready:
		case <-deadline:
			return fmt.Errorf("no echo reply from %s within %v", dst, timeout)
		}
	}
}
