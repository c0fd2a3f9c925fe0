// Package masq is masquerade networking for virtual machines in user space.
// Run composes the parts: the guest's link (package link), the gVisor stack
// facing the guest (package stack) and what runs on it: DHCP (package
// dhcp), the guest's flows through the pod (package nat) and the forwarded
// ports (package inbound). It is the one place where they meet.
package masq

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/masqnet/masq/capture"
	"github.com/masqnet/masq/dhcp"
	"github.com/masqnet/masq/flowtable"
	"github.com/masqnet/masq/inbound"
	"github.com/masqnet/masq/internal/relay"
	"github.com/masqnet/masq/internal/sandbox"
	"github.com/masqnet/masq/link"
	"github.com/masqnet/masq/link/vhostuser"
	"github.com/masqnet/masq/nat"
	"github.com/masqnet/masq/ports"
	"github.com/masqnet/masq/stack"
)

// Run serves the guest until ctx ends, then closes everything it opened and
// returns nil; it returns an error, having closed everything, when
// something fails. Configuration errors are found before anything starts.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		closeTapFD(cfg)
		return &ConfigError{err}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	p, err := plan(cfg, log)
	if err != nil {
		closeTapFD(cfg)
		return &ConfigError{err}
	}
	pcap, err := createPCAP(cfg.PCAP)
	if err != nil {
		closeTapFD(cfg)
		return &ConfigError{err}
	}
	defer pcap.close() // last: the capture sees the stack's final frames
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	gl, err := openGuestLink(cfg, p.mtu, func(err error) { cancel(fmt.Errorf("guest link closed: %w", err)) })
	if err != nil {
		return err
	}
	defer gl.close()
	// Between the link and the stack, the capture sees every frame the
	// guest exchanges with masq, DHCP's and ARP's included.
	capt := capture.New(gl.ep)
	st, err := stack.New(capt, stack.Config{MTU: p.mtu, IPv4: p.gateway4, IPv6: p.gateway6})
	if err != nil {
		capt.Close()
		return fmt.Errorf("create guest network stack: %w", err)
	}
	defer st.Close()
	log = log.With("link", gl.name)
	log.Info("guest link", "kind", gl.kind, "mtu", p.mtu, "offload", gl.offload)
	if err := pcap.start(capt, cfg.pcapMaxBytes(), log); err != nil {
		return err
	}
	obs := newObserver(cfg)
	// The control socket's live capture: POST /pcap?seconds=N.
	live, err := capture.NewHandler(capt, capture.HandlerConfig{MaxBytes: cfg.pcapMaxBytes(), Logger: log})
	if err != nil {
		return &ConfigError{err}
	}
	obs.handlers["POST /pcap"] = live
	pod := cfg.Pod
	if pod == nil {
		pod = kernelPod{nat.KernelPod{NoRawPing: cfg.NoRawPing}}
	}
	return serve(ctx, st, gl, p, pod, cfg.Ready, obs, log)
}

// serve runs the services on st until ctx ends and waits for all of them.
func serve(ctx context.Context, st *stack.Stack, gl *guestLink, p runPlan, pod Pod, ready func(), obs *observer, log *slog.Logger) error {
	if pod == nil {
		pod = kernelPod{}
	}
	srv, err := dhcp.NewServer(p.dhcp, log)
	if err != nil {
		return fmt.Errorf("dhcp server: %w", err)
	}
	// One bound on TCP connections, outbound and inbound, and one pool
	// of copy buffers for both.
	limit, pool := relay.NewLimit(nat.DefaultMaxTCP), relay.NewPool()
	table := flowtable.New(nil) // the flows of both directions, for the control endpoint
	fwd, err := inbound.New(st, inbound.Config{Ports: p.ports, Except: p.except,
		Guest4: p.policy.Guest4, Guest6: p.policy.Guest6, Gateway4: p.gateway4.Addr(), Gateway6: p.gateway6.Addr(),
		Pod: pod, TCPLimit: limit, Pool: pool, Logger: log, Flows: table})
	if err != nil {
		return fmt.Errorf("forward ports: %w", err)
	}
	defer fwd.Close() // when Run has not (an error below)
	flows, err := nat.New(st, nat.Config{Policy: p.policy, Pod: pod, Logger: log,
		TCPLimit: limit, Pool: pool, InboundReply: fwd.FromGuest, Flows: table, BurstEnd: gl.burstEnd})
	if err != nil {
		return fmt.Errorf("masquerade: %w", err)
	}
	defer flows.Close() // when Run has not (an error below)
	if err := st.Start(); err != nil {
		return err
	}
	conn, err := st.ListenUDP(netip.AddrPortFrom(netip.IPv4Unspecified(), dhcp.ServerPort))
	if err != nil {
		return fmt.Errorf("listen for DHCP: %w", err)
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	errc := make(chan error, 2) // DHCPv4's and DHCPv6's
	wg.Go(func() { errc <- srv.Serve(ctx, conn) })
	release6, err := serveIPv6(ctx, st, p, &wg, errc, log)
	if err != nil {
		stop()
		wg.Wait()
		return fmt.Errorf("ipv6 configuration: %w", err)
	}
	defer release6()
	wg.Go(func() { flows.Run(ctx) })
	wg.Go(func() { fwd.Run(ctx) })
	if gl.stats != nil {
		wg.Go(func() { link.LogStats(ctx, gl.stats, log) })
	}
	if err := obs.start(ctx, &wg, observed{st: st, gl: gl, p: p, dhcp: srv, nat: flows, fwd: fwd, flows: table}, log); err != nil {
		stop()
		wg.Wait()
		return err
	}
	// Every socket, listener and namespace setup needs is open (the
	// control socket's too): confine the process before it is ready.
	if err := confine(p.sandbox, flows.RawPing(), log); err != nil {
		stop()
		wg.Wait()
		return err
	}
	obs.serving.Store(true)
	log.Info("masq ready", "gateway", p.gateway4, "gateway6", p.gateway6, "guest", p.dhcp.GuestIP, "mtu", p.mtu,
		"dhcpv6", p.dhcp6 != nil, "ra", p.ra != nil)
	if ready != nil {
		ready()
	}
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	stop()
	wg.Wait()
	if serveErr != nil {
		return fmt.Errorf("dhcp server: %w", serveErr)
	}
	if cause := context.Cause(ctx); !errors.Is(cause, context.Canceled) {
		return cause
	}
	log.Info("masq stopped")
	return nil
}

// confine applies o to the process (nothing when o is nil) and logs what
// it kept: CAP_NET_RAW when rawPing, since guest pings then need a raw
// ICMP socket each.
func confine(o *sandbox.Options, rawPing bool, log *slog.Logger) error {
	if o == nil {
		return nil
	}
	opts := *o
	opts.KeepNetRaw = rawPing
	start := time.Now()
	rep, err := sandbox.Apply(opts)
	if err != nil {
		return fmt.Errorf("confine masq: %w", err)
	}
	log.Info("sandbox", "capabilities", fmt.Sprintf("%#x", rep.KeptCaps), "no_new_privs", true,
		"seccomp", rep.Seccomp, "seccomp_deny", rep.Deny.String(), "threads", rep.Threads, "took", time.Since(start))
	return nil
}

// guestLink is the guest's link as Run uses it: the endpoint the stack
// runs on and what Run closes after the stack.
type guestLink struct {
	ep      gstack.LinkEndpoint
	kind    string // "tap", "attach", "socket", "vhost-user"
	name    string // for logs
	offload bool   // frames carry virtio-net headers with TSO
	// burstEnd registers what the link's reader calls at the end of each
	// burst of frames (nat.Config.BurstEnd); nil when it does not.
	burstEnd func(func())
	stats    func() link.Stats
	close    func() error
}

// openGuestLink opens the guest's link as cfg says; closed is called when
// the link fails for good.
func openGuestLink(cfg Config, mtu uint32, closed func(error)) (*guestLink, error) {
	if cfg.VhostUser != "" {
		return openVhostUser(cfg, mtu, closed)
	}
	if cfg.Attach != "" {
		return openAttached(cfg, mtu, closed)
	}
	if !cfg.Socket.IsZero() {
		return openSocket(cfg, mtu, closed)
	}
	var tap *link.Tap
	var err error
	if cfg.TapFD >= 0 {
		if tap, err = link.TapFromFD(cfg.TapFD); err != nil {
			closeTapFD(cfg) // Run owns it either way
			return nil, &ConfigError{fmt.Errorf("--tap-fd: %w", err)}
		}
	} else if tap, err = link.OpenTap(link.TapConfig{Name: cfg.Tap, Netns: cfg.GuestNetns, MTU: mtu, Offload: !cfg.NoOffload}); err != nil {
		if errors.Is(err, fs.ErrPermission) {
			return nil, fmt.Errorf("open guest link: %w (a rootless masq needs a /dev/net/tun it may open and CAP_NET_ADMIN in the namespace, or --socket; README: Rootless)", err)
		}
		return nil, fmt.Errorf("open guest link: %w", err)
	}
	gl := &guestLink{kind: "tap", name: tap.Name(), offload: tap.Offload(), close: tap.Close}
	if tap.Offload() {
		v, err := link.NewVnet(tap.FD(), mtu, closed)
		if err != nil {
			tap.Close()
			return nil, err
		}
		gl.ep, gl.stats, gl.burstEnd = v, v.Stats, v.OnBurstEnd
		return gl, nil
	}
	if gl.ep, err = link.NewFD(tap.FD(), mtu, closed); err != nil {
		tap.Close()
		return nil, err
	}
	return gl, nil
}

// openAttached opens the AF_PACKET link to the interface cfg.Attach names.
// An interface that is missing or that the pod's kernel answers on is a
// configuration problem (exit 2); a missing CAP_NET_RAW is not.
func openAttached(cfg Config, mtu uint32, closed func(error)) (*guestLink, error) {
	p, err := link.OpenPacket(link.PacketConfig{Name: cfg.Attach, Netns: cfg.GuestNetns, MTU: mtu, Offload: !cfg.NoOffload})
	if errors.Is(err, link.ErrUnusable) {
		return nil, &ConfigError{err}
	}
	if err != nil {
		return nil, err
	}
	gl := &guestLink{kind: "attach", name: p.Name(), offload: p.Offload(), close: p.Close}
	if p.Offload() {
		v, err := link.NewVnet(p.FD(), mtu, closed)
		if err != nil {
			p.Close()
			return nil, err
		}
		gl.ep, gl.stats, gl.burstEnd = v, v.Stats, v.OnBurstEnd
		return gl, nil
	}
	if gl.ep, err = link.NewPacketFD(p.FD(), mtu, closed); err != nil {
		p.Close()
		return nil, err
	}
	return gl, nil
}

// openSocket listens for the guest's QEMU on cfg.Socket.
func openSocket(cfg Config, mtu uint32, closed func(error)) (*guestLink, error) {
	addr := cfg.Socket
	s, err := link.ListenSocket(link.SocketConfig{Addr: addr, Mode: cfg.SocketMode, MTU: mtu,
		Logger: cfg.Logger, Closed: closed})
	if err != nil {
		return nil, fmt.Errorf("--socket: %w", err)
	}
	name := addr.Path
	if addr.IsTCP() {
		name = "tcp:" + s.Addr().String()
	}
	return &guestLink{ep: s, kind: "socket", name: name, stats: s.Stats, burstEnd: s.OnBurstEnd,
		close: func() error { s.Close(); return nil }}, nil
}

// openVhostUser listens for the guest's QEMU as its vhost-user back-end.
func openVhostUser(cfg Config, mtu uint32, closed func(error)) (*guestLink, error) {
	e, err := vhostuser.Listen(vhostuser.Config{Path: cfg.VhostUser, Mode: cfg.SocketMode, MTU: mtu,
		Logger: cfg.Logger, Closed: closed})
	if err != nil {
		return nil, fmt.Errorf("--vhost-user: %w", err)
	}
	return &guestLink{ep: e, kind: "vhost-user", name: cfg.VhostUser, offload: true, stats: e.LinkStats,
		burstEnd: e.OnBurstEnd, close: func() error { e.Close(); return nil }}, nil
}

// closeTapFD closes an inherited tap fd that Run will not adopt: Run owns
// it either way.
func closeTapFD(cfg Config) {
	if cfg.TapFD >= 0 {
		syscall.Close(cfg.TapFD)
	}
}

// Pod is how masq reaches the world from the pod: the outbound flows'
// sockets (nat.Pod) and the forwarded ports' (inbound.Pod). Tests and
// embedders inject their own.
type Pod interface {
	nat.Pod
	inbound.Pod
}

// kernelPod is the kernel's sockets in masq's own network namespace.
type kernelPod struct{ nat.KernelPod }

// Listen implements inbound.Pod.Listen.
func (kernelPod) Listen(proto ports.Protocol, fam inbound.Family, port uint16) (*inbound.Socket, error) {
	return inbound.KernelPod{}.Listen(proto, fam, port)
}

// EphemeralPorts implements inbound.Pod.EphemeralPorts.
func (kernelPod) EphemeralPorts() (first, last uint16, err error) {
	return inbound.KernelPod{}.EphemeralPorts()
}

// ConfigError is returned by Run when the configuration or the system it
// names is unusable; nothing was started. The command line exits 2 on it.
type ConfigError struct{ Err error }

// Error implements error.
func (e *ConfigError) Error() string { return e.Err.Error() }

// Unwrap returns the underlying error.
func (e *ConfigError) Unwrap() error { return e.Err }

// hostname returns name, or the pod's host name when name is empty.
func hostname(name string) string {
	if name != "" {
		return name
	}
	h, err := os.Hostname()
	if err != nil || validHostname(h) != nil {
		return ""
	}
	return h
}
