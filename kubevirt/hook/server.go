// Package hook is masq's KubeVirt network binding plugin sidecar: KubeVirt's
// hook API (services kubevirt.hooks.info.Info and
// kubevirt.hooks.v1alpha3.Callbacks) over gRPC on a unix socket, answering
// OnDefineDomain with kubevirt.AddInterface. It is apart from package
// kubevirt so that the manifest reader links no gRPC.
package hook

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/masqnet/masq/kubevirt"
)

// SocketDir is where virt-launcher looks for its sidecars' hook sockets
// (KubeVirt's hooks.HookSocketsSharedDirectory).
const SocketDir = "/var/run/kubevirt-hooks"

// DefaultSocket is the hook socket's path unless told otherwise.
const DefaultSocket = SocketDir + "/masq.sock"

// DefaultName is the name Info reports, after KubeVirt's own
// "network-passt-binding".
const DefaultName = "network-masq-binding"

// Version is the one version of the Callbacks service implemented.
const Version = "v1alpha3"

// Hook point names, as virt-launcher calls them.
const (
	OnDefineDomain = "OnDefineDomain"
	Shutdown       = "Shutdown"
)

// Server answers KubeVirt's hook calls. Its fields must be set before
// Serve and not changed after.
type Server struct {
	// Name is what Info reports; "" is DefaultName.
	Name string

	// Domain says which interface OnDefineDomain connects to masq, and to
	// which port.
	Domain kubevirt.DomainOptions

	// OnVMI, when set, is called with the VMI's JSON on each
	// OnDefineDomain, once the domain has been rewritten and before it is
	// answered: the sidecar starts masq's data path for the VM there, so
	// that it listens before QEMU connects. An error fails the call.
	OnVMI func(vmi []byte) error

	// Log receives a line per call; nil discards.
	Log *slog.Logger
}

// Listen opens the hook's unix socket at path, first removing a socket
// left there by an earlier run (never any other kind of file). The socket
// file is removed when the listener is closed.
func Listen(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil && fi.Mode().Type() == fs.ModeSocket {
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("cannot remove stale hook socket: %w", err)
		}
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("cannot listen for KubeVirt's hook calls: %w", err)
	}
	return l, nil
}

// Serve answers hook calls on l until ctx ends or virt-launcher calls
// Shutdown, then stops gracefully and returns nil; it returns gRPC's
// error if serving fails. It takes ownership of l.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	h := &handler{
		name:     s.Name,
		domain:   s.Domain,
		onVMI:    s.OnVMI,
		log:      s.Log,
		shutdown: cancel,
	}
	if h.name == "" {
		h.name = DefaultName
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	srv := grpc.NewServer(grpc.ForceServerCodec(codec{}))
	srv.RegisterService(&infoService, h)
	srv.RegisterService(&callbacksService, h)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	select {
	case <-ctx.Done():
		srv.GracefulStop() // lets a Shutdown call in flight answer
		<-served
		return nil
	case err := <-served:
		return fmt.Errorf("hook server: %w", err)
	}
}

// handler implements both services.
type handler struct {
	name     string
	domain   kubevirt.DomainOptions
	onVMI    func(vmi []byte) error
	log      *slog.Logger
	shutdown context.CancelFunc
}

// Info implements kubevirt.hooks.info.Info.Info.
func (h *handler) Info(context.Context, *InfoParams) (*InfoResult, error) {
	return &InfoResult{
		Name:     h.name,
		Versions: []string{Version},
		HookPoints: []HookPoint{
			{Name: OnDefineDomain},
			// virt-launcher calls Shutdown when the VM is gone, so that the
			// sidecar ends with the pod (KubeVirt's passt sidecar does too).
			{Name: Shutdown},
		},
	}, nil
}

// OnDefineDomain implements kubevirt.hooks.v1alpha3.Callbacks.OnDefineDomain.
func (h *handler) OnDefineDomain(_ context.Context, p *OnDefineDomainParams) (*OnDefineDomainResult, error) {
	out, err := kubevirt.AddInterface(p.DomainXML, p.VMI, h.domain)
	if err != nil {
		h.log.Error("OnDefineDomain: cannot add masq's interface", "err", err)
		return nil, status.Error(codes.InvalidArgument, "masq: "+err.Error())
	}
	if h.onVMI != nil {
		if err := h.onVMI(p.VMI); err != nil {
			h.log.Error("OnDefineDomain: cannot serve the VM", "err", err)
			return nil, status.Error(codes.Unavailable, "masq: "+err.Error())
		}
	}
	h.log.Info("OnDefineDomain: masq's interface added", "port", h.domain.Port)
	return &OnDefineDomainResult{DomainXML: out}, nil
}

// PreCloudInitIso implements kubevirt.hooks.v1alpha3.Callbacks.PreCloudInitIso:
// the cloud-init data passes unchanged.
func (h *handler) PreCloudInitIso(_ context.Context, p *PreCloudInitIsoParams) (*PreCloudInitIsoResult, error) {
	return &PreCloudInitIsoResult{CloudInitNoCloudSource: p.CloudInitNoCloudSource, CloudInitData: p.CloudInitData}, nil
}

// Shutdown implements kubevirt.hooks.v1alpha3.Callbacks.Shutdown: Serve
// returns once this call is answered.
func (h *handler) Shutdown(context.Context, *ShutdownParams) (*ShutdownResult, error) {
	h.log.Info("Shutdown: the VM is gone; stopping")
	h.shutdown()
	return &ShutdownResult{}, nil
}

// infoServer and callbacksServer are the services' method sets, which
// grpc.Server.RegisterService checks handler against.
type (
	infoServer interface {
		Info(context.Context, *InfoParams) (*InfoResult, error)
	}
	callbacksServer interface {
		OnDefineDomain(context.Context, *OnDefineDomainParams) (*OnDefineDomainResult, error)
		PreCloudInitIso(context.Context, *PreCloudInitIsoParams) (*PreCloudInitIsoResult, error)
		Shutdown(context.Context, *ShutdownParams) (*ShutdownResult, error)
	}
)

var (
	_ infoServer      = (*handler)(nil)
	_ callbacksServer = (*handler)(nil)
)

// The services' full names: the .proto's package and service.
const (
	infoName      = "kubevirt.hooks.info.Info"
	callbacksName = "kubevirt.hooks.v1alpha3.Callbacks"
)

// The services, as protoc-gen-go-grpc would describe them.
var (
	infoService = grpc.ServiceDesc{
		ServiceName: infoName,
		HandlerType: (*infoServer)(nil),
		Methods: []grpc.MethodDesc{
			unary(infoName, "Info", (*handler).Info),
		},
		Metadata: "pkg/hooks/info/api_info.proto",
	}
	callbacksService = grpc.ServiceDesc{
		ServiceName: callbacksName,
		HandlerType: (*callbacksServer)(nil),
		Methods: []grpc.MethodDesc{
			unary(callbacksName, "OnDefineDomain", (*handler).OnDefineDomain),
			unary(callbacksName, "PreCloudInitIso", (*handler).PreCloudInitIso),
			unary(callbacksName, "Shutdown", (*handler).Shutdown),
		},
		Metadata: "pkg/hooks/v1alpha3/api_v1alpha3.proto",
	}
)

// unary describes the unary method of service called name, answered by
// call, for a grpc.ServiceDesc.
func unary[P, R any, PP interface {
	*P
	message
}](service, name string, call func(*handler, context.Context, PP) (*R, error)) grpc.MethodDesc {
	fullMethod := "/" + service + "/" + name
	return grpc.MethodDesc{
		MethodName: name,
		Handler: func(srv any, ctx context.Context, dec func(any) error, intercept grpc.UnaryServerInterceptor) (any, error) {
			in := PP(new(P))
			if err := dec(in); err != nil {
				return nil, err
			}
			h := srv.(*handler)
			if intercept == nil {
				return call(h, ctx, in)
			}
			info := &grpc.UnaryServerInfo{Server: srv, FullMethod: fullMethod}
			return intercept(ctx, in, info, func(ctx context.Context, req any) (any, error) {
				return call(h, ctx, req.(PP))
			})
		},
	}
}
