package masq

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"

	"github.com/masqnet/masq/control"
	"github.com/masqnet/masq/dhcp"
	"github.com/masqnet/masq/flowtable"
	"github.com/masqnet/masq/inbound"
	"github.com/masqnet/masq/metrics"
	"github.com/masqnet/masq/nat"
	"github.com/masqnet/masq/stack"
)

// observer is what Run serves about itself: the control socket
// (Config.Control) and the Prometheus address (Config.Metrics).
type observer struct {
	control  string
	metrics  string
	handlers map[string]http.Handler
	version  string
	started  time.Time
	serving  atomic.Bool // set once every service is up
}

func newObserver(cfg Config) *observer {
	handlers := make(map[string]http.Handler, len(cfg.ControlHandlers))
	maps.Copy(handlers, cfg.ControlHandlers)
	return &observer{control: cfg.Control, metrics: cfg.Metrics, handlers: handlers,
		version: cfg.Version, started: time.Now()}
}

// observed are the running parts an observer reads.
type observed struct {
	st    *stack.Stack
	gl    *guestLink
	p     runPlan
	dhcp  *dhcp.Server
	nat   *nat.NAT
	fwd   *inbound.Forwarder
	flows *flowtable.Table
}

// start opens the control socket and the metrics address, when asked
// for, and serves them on wg until ctx ends.
func (o *observer) start(ctx context.Context, wg *sync.WaitGroup, parts observed, log *slog.Logger) error {
	if o.control == "" && o.metrics == "" {
		return nil
	}
	src := metrics.Sources{Version: o.version, NAT: parts.nat.Stats, Usage: parts.nat.Usage,
		Inbound: parts.fwd.Stats, InboundUDP: parts.fwd.UDPFlows, Link: parts.gl.stats, DHCP: parts.dhcp.Stats,
		Stack: parts.st.Netstack(), NIC: parts.st.NIC(), Flows: parts.flows}
	ccfg := control.Config{
		Status:   func() control.Status { return o.status(parts) },
		Flows:    parts.flows,
		Metrics:  promhttp.HandlerFor(metrics.NewRegistry(src), promhttp.HandlerOpts{}),
		Ready:    func() error { return o.ready(parts) },
		Handlers: o.handlers,
		Logger:   log,
	}
	var servers []*control.Server
	if o.control != "" {
		s, err := control.ListenUnix(o.control, control.ControlHandler(ccfg), log)
		if err != nil {
			return &ConfigError{err}
		}
		servers = append(servers, s)
	}
	if o.metrics != "" {
		s, err := control.ListenTCP(o.metrics, control.MetricsHandler(ccfg), log)
		if err != nil {
			for _, s := range servers {
				s.Close()
			}
			return &ConfigError{err}
		}
		servers = append(servers, s)
		log.Info("serving metrics", "addr", s.Addr())
	}
	for _, s := range servers {
		wg.Go(func() {
			if err := s.Serve(ctx); err != nil {
				log.Warn("control endpoint stopped", "addr", s.Addr(), "err", err)
			}
		})
	}
	return nil
}

// ready returns why masq is not ready, or nil: it serves and its link is
// up.
func (o *observer) ready(parts observed) error {
	switch {
	case !o.serving.Load():
		return errors.New("starting")
	case !linkUp(parts.gl):
		return errors.New("guest link down")
	}
	return nil
}

// linkUp reports whether gl carries frames: attached to the stack and,
// for a --socket link, with QEMU connected.
func linkUp(gl *guestLink) bool {
	if c, ok := gl.ep.(interface{ Connected() bool }); ok && !c.Connected() {
		return false
	}
	return gl.ep.IsAttached()
}

// status assembles GET /status.
func (o *observer) status(parts observed) control.Status {
	p := parts.p
	s := control.Status{Version: o.version, Started: o.started, UptimeSeconds: time.Since(o.started).Seconds(),
		Link: control.Link{Kind: parts.gl.kind, Name: parts.gl.name, MTU: p.mtu, Offload: parts.gl.offload,
			Up: linkUp(parts.gl)},
		Gateway: []string{p.gateway4.String()}, Forwarded: []string{}}
	if p.gateway6.IsValid() {
		s.Gateway = append(s.Gateway, p.gateway6.String())
	}
	if err := o.ready(parts); err != nil {
		s.Ready = err.Error()
	}
	s.Guest = o.guest(parts)
	for _, r := range parts.fwd.Forwarded().Ranges() {
		s.Forwarded = append(s.Forwarded, r.String())
	}
	u := parts.nat.Usage()
	inUsed, inMax := parts.fwd.UDPFlows()
	s.Limits = []control.Limit{
		{Name: "tcp_connections", Used: u.TCP, Max: u.MaxTCP},
		{Name: "udp_flows", Used: u.UDPFlows, Max: u.MaxUDPFlows},
		{Name: "udp_destinations", Used: u.UDPPeers, Max: u.MaxUDPPeers},
		{Name: "icmp_flows", Used: u.ICMPFlows, Max: u.MaxUDPFlows},
		{Name: "icmp_destinations", Used: u.ICMPPeers, Max: u.MaxUDPPeers},
		{Name: "inbound_udp_flows", Used: inUsed, Max: inMax},
	}
	return s
}

// guest returns what masq knows of the guest: its addresses, the MAC its
// stack learned for them, and its DHCP lease.
func (o *observer) guest(parts observed) control.Guest {
	p := parts.p
	g := control.Guest{Lease: parts.dhcp.Stats().Lease}
	ns := parts.st.Netstack()
	for _, a := range []netip.Addr{p.policy.Guest4, p.policy.Guest6} {
		if !a.IsValid() {
			continue
		}
		g.Addresses = append(g.Addresses, a.String())
		proto := tcpip.NetworkProtocolNumber(ipv4.ProtocolNumber)
		if a.Is6() {
			proto = ipv6.ProtocolNumber
		}
		entries, _ := ns.Neighbors(parts.st.NIC(), proto)
		for _, n := range entries {
			if g.MAC == "" && n.Addr == tcpip.AddrFromSlice(a.AsSlice()) && n.LinkAddr != "" {
				g.MAC = n.LinkAddr.String()
			}
		}
	}
	if g.MAC == "" {
		g.MAC = g.Lease.MAC
	}
	return g
}
