package stack

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"syscall"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// DialTCP connects to the guest at dst from src, which may be any address
// (the NIC spoofs): an inbound connection reaches the guest from its real
// client's address. When src's port is taken, an ephemeral one is used. A
// refusal (the guest's RST) is an error wrapping syscall.ECONNREFUSED. On
// success the caller owns the endpoint and its wait queue.
func (s *Stack) DialTCP(ctx context.Context, src, dst netip.AddrPort) (tcpip.Endpoint, *waiter.Queue, error) {
	wq := new(waiter.Queue)
	ep, terr := s.ns.NewEndpoint(tcp.ProtocolNumber, protocolOf(dst.Addr()), wq)
	if terr != nil {
		return nil, nil, fmt.Errorf("tcp endpoint: %s", terr)
	}
	if err := bindSpoofed(ep, src); err != nil {
		ep.Close()
		return nil, nil, err
	}
	entry, ready := waiter.NewChannelEntry(waiter.WritableEvents | waiter.EventHUp | waiter.EventErr)
	wq.EventRegister(&entry)
	defer wq.EventUnregister(&entry)
	terr = ep.Connect(FullAddress(dst))
	if _, ok := terr.(*tcpip.ErrConnectStarted); ok {
		select {
		case <-ctx.Done():
			ep.Abort()
			ep.Close()
			return nil, nil, fmt.Errorf("connect to guest %s: %w", dst, ctx.Err())
		case <-ready:
		}
		terr = ep.LastError()
	}
	if terr != nil {
		ep.Close()
		return nil, nil, fmt.Errorf("connect to guest %s: %w", dst, tcpipError(terr))
	}
	return ep, wq, nil
}

// bindSpoofed binds ep to src, or to src's address and any port when the
// port is in use.
func bindSpoofed(ep tcpip.Endpoint, src netip.AddrPort) error {
	terr := ep.Bind(FullAddress(src))
	if _, inUse := terr.(*tcpip.ErrPortInUse); inUse {
		terr = ep.Bind(FullAddress(netip.AddrPortFrom(src.Addr(), 0)))
	}
	if terr != nil {
		return fmt.Errorf("bind %s: %s", src, terr)
	}
	return nil
}

// tcpipError converts the gVisor errors callers act on to syscall errors,
// so they can use errors.Is; others keep their text.
func tcpipError(err tcpip.Error) error {
	switch err.(type) {
	case *tcpip.ErrConnectionRefused:
		return syscall.ECONNREFUSED
	case *tcpip.ErrConnectionReset:
		return syscall.ECONNRESET
	case *tcpip.ErrTimeout:
		return syscall.ETIMEDOUT
	case *tcpip.ErrHostUnreachable, *tcpip.ErrNetworkUnreachable:
		return syscall.EHOSTUNREACH
	}
	return errors.New(err.String())
}
