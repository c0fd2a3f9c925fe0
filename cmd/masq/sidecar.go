package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/masqnet/masq"
	"github.com/masqnet/masq/kubevirt"
	"github.com/masqnet/masq/kubevirt/hook"
	"github.com/masqnet/masq/link"
)

// sidecarReadyTimeout bounds the start of masq's data path inside an
// OnDefineDomain call: virt-launcher waits on the call, and the link, the
// stack and the forwarded ports are up in well under a second.
const sidecarReadyTimeout = 30 * time.Second

// newKubevirtSidecarCommand builds `masq kubevirt sidecar`: the binding
// plugin's sidecar container, one process. It serves KubeVirt's hook
// API; on OnDefineDomain it starts masq for the VM (configured from the
// VMI the hook receives: the bound interface's ports and MAC, the pod
// network's CIDRs), listening on 127.0.0.1:PORT for QEMU, and answers with
// the domain whose interface connects there. It stops when virt-launcher
// calls Shutdown or on SIGTERM.
func newKubevirtSidecarCommand() *cobra.Command {
	var f hookFlags
	var level string
	cmd := &cobra.Command{
		Use:   "sidecar [--hook-socket PATH] [--port PORT] [--binding NAME] [--vhost-user[=PATH]]",
		Short: "The binding plugin's sidecar: KubeVirt's hook, and masq serving the VM",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkHookFlags(f.port, f.binding); err != nil {
				return &usageError{err}
			}
			lvl, err := parseLevel(level)
			if err != nil {
				return &usageError{err}
			}
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: lvl}))
			l, err := hook.Listen(f.socket)
			if err != nil {
				return &usageError{fmt.Errorf("--hook-socket %s: %w", f.socket, err)}
			}
			ctx, cancel := context.WithCancelCause(cmd.Context())
			defer cancel(nil)
			s := &sidecar{ctx: ctx, fail: cancel, port: f.port, binding: f.binding, vhostUser: f.vhostUser, log: log}
			log.Info("serving KubeVirt's hook API", "socket", f.socket, "binding", f.binding, "port", f.port, "vhost_user", f.vhostUser)
			srv := &hook.Server{Domain: kubevirt.DomainOptions{Binding: f.binding, Port: f.port, VhostUser: f.vhostUser},
				OnVMI: s.start, Log: log}
			err = srv.Serve(ctx, l)
			cancel(nil)
			s.wg.Wait()
			if cause := context.Cause(ctx); err == nil && cause != nil && !errors.Is(cause, context.Canceled) {
				err = cause
			}
			return err
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.socket, "hook-socket", hook.DefaultSocket, "unix socket virt-launcher calls the hook on")
	bindingFlags(fs, &f.port, &f.binding)
	vhostUserFlag(fs, &f.vhostUser)
	fs.StringVar(&level, "log-level", "info", "debug, info, warn or error")
	return cmd
}

// sidecar runs masq for the VM the hook is told of, once.
type sidecar struct {
	ctx       context.Context         // ends when the sidecar stops
	fail      context.CancelCauseFunc // stops the sidecar when masq fails
	port      uint16
	binding   string
	vhostUser string // the vhost-user socket's path, or "" for the TCP link
	log       *slog.Logger

	mu      sync.Mutex
	running bool // guarded by mu
	wg      sync.WaitGroup
}

// start implements hook.Server.OnVMI: it starts masq for vmi unless it
// runs already (virt-launcher may define the domain again), and returns
// once masq listens for QEMU, or with masq's error.
func (s *sidecar) start(vmi []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running {
		return nil
	}
	m, err := kubevirt.ParseBoundManifest(vmi, s.binding)
	if err != nil {
		return fmt.Errorf("the VMI: %w", err)
	}
	cfg := masq.DefaultConfig()
	if s.vhostUser != "" {
		cfg.VhostUser = s.vhostUser
	} else {
		cfg.Socket = link.SocketAddr{TCP: netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), s.port)}
	}
	cfg.Ports, cfg.GuestMAC, cfg.Logger = m.Ports, m.MAC, s.log
	// The sidecar is the whole process, its hook listener open already:
	// confine it once masq is set up, as `masq run` does.
	cfg.Confine, cfg.SeccompCrash = true, os.Getenv(seccompDenyEnv) == "crash"
	if m.VMCIDR.IsValid() {
		cfg.VMCIDR = m.VMCIDR
	}
	if m.VMIPv6CIDR.IsValid() {
		cfg.VMIPv6CIDR = m.VMIPv6CIDR
	}
	ready := make(chan struct{})
	cfg.Ready = func() { close(ready) }
	errc := make(chan error, 1)
	s.wg.Go(func() { errc <- masq.Run(s.ctx, cfg) })
	select {
	case <-ready:
	case err := <-errc:
		if err == nil {
			err = errors.New("stopped before serving")
		}
		return fmt.Errorf("masq for VM %q: %w", m.Name, err)
	case <-time.After(sidecarReadyTimeout):
		return fmt.Errorf("masq for VM %q not ready within %v", m.Name, sidecarReadyTimeout)
	}
	s.running = true
	s.wg.Go(func() {
		if err := <-errc; err != nil {
			s.fail(fmt.Errorf("masq for VM %q: %w", m.Name, err)) // the VM has lost its network: end the pod's sidecar
		}
	})
	return nil
}
