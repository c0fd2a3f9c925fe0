package masq

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"

	"github.com/masqnet/masq/dhcp"
	"github.com/masqnet/masq/stack"
)

// serveIPv6 starts what configures the guest's IPv6 on the started stack
// st, when p has IPv6: the DHCPv6 server on [::]:547, reached through
// ff02::1:2, and the Router Advertisements from the gateway's link-local
// address. Their goroutines join wg and end with ctx; a DHCPv6 read
// error goes to errc. It returns a func that releases what outlives them.
func serveIPv6(ctx context.Context, st *stack.Stack, p runPlan, wg *sync.WaitGroup, errc chan<- error, log *slog.Logger) (func(), error) {
	if p.dhcp6 == nil {
		return func() {}, nil
	}
	srv, err := dhcp.NewServer6(*p.dhcp6, log)
	if err != nil {
		return nil, err
	}
	if err := st.JoinGroup(dhcp.AllDHCPServers); err != nil {
		return nil, fmt.Errorf("dhcpv6: %w", err)
	}
	conn, err := st.ListenUDP(netip.AddrPortFrom(netip.IPv6Unspecified(), dhcp.ServerPort6))
	if err != nil {
		return nil, fmt.Errorf("listen for DHCPv6: %w", err)
	}
	if p.ra == nil {
		wg.Go(func() { errc <- srv.Serve(ctx, conn) })
		return func() {}, nil
	}
	snd, err := st.NewSender(st.LinkLocal(), stack.AllNodes)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("router advertisements: %w", err)
	}
	adv, err := dhcp.NewAdvertiser(*p.ra, func(msg []byte) error {
		return snd.WriteICMPHopLimit(msg, dhcp.RAHopLimit)
	}, log)
	if err != nil {
		snd.Close()
		conn.Close()
		return nil, err
	}
	st.OnRouterSolicit(adv.Solicited)
	wg.Go(func() { errc <- srv.Serve(ctx, conn) })
	wg.Go(func() { adv.Run(ctx) })
	return snd.Close, nil
}
