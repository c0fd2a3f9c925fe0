package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/masqnet/masq/flowtable"
)

// Config is what the endpoint serves. Every func must be safe for
// concurrent use; they are called per request, never on a packet path.
// Status, Flows, Metrics and Ready must be set.
type Config struct {
	// Status returns the status (GET /status).
	Status func() Status
	// Flows is the flow table GET /flows lists.
	Flows *flowtable.Table
	// Metrics serves GET /metrics (the Prometheus registry's handler).
	Metrics http.Handler
	// Ready returns nil when masq is ready (GET /readyz): its link is up
	// and it serves; else why not.
	Ready func() error
	// Handlers are further handlers, by http.ServeMux pattern ("POST
	// /pcap"), mounted on the control socket only.
	Handlers map[string]http.Handler
	// Logger logs the servers' failures; nil discards.
	Logger *slog.Logger
}

// ControlHandler returns the control socket's handler: /status, /flows,
// /metrics, /healthz, /readyz and cfg.Handlers.
func ControlHandler(cfg Config) http.Handler {
	mux := metricsMux(cfg)
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, cfg.Status()) })
	mux.HandleFunc("GET /flows", func(w http.ResponseWriter, r *http.Request) {
		f, err := ParseFilter(r.URL.Query())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		writeJSON(w, cfg.Flows.Flows(f))
	})
	for pattern, h := range cfg.Handlers {
		mux.Handle(pattern, h)
	}
	return mux
}

// MetricsHandler returns the --metrics address's handler: /metrics,
// /healthz and /readyz.
func MetricsHandler(cfg Config) http.Handler { return metricsMux(cfg) }

func metricsMux(cfg Config) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", cfg.Metrics)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := cfg.Ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return mux
}

// writeJSON writes v as indented JSON.
func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// ParseFilter reads /flows's query: proto (tcp, udp, icmp), port and
// addr, each optional.
func ParseFilter(q url.Values) (flowtable.Filter, error) {
	var f flowtable.Filter
	if s := q.Get("proto"); s != "" {
		p, ok := flowtable.ParseProto(s)
		if !ok {
			return f, fmt.Errorf("proto %q: want tcp, udp or icmp", s)
		}
		f.Proto, f.HasProto = p, true
	}
	if s := q.Get("port"); s != "" {
		p, err := strconv.ParseUint(s, 10, 16)
		if err != nil || p == 0 {
			return f, fmt.Errorf("port %q: want 1 to 65535", s)
		}
		f.Port = uint16(p)
	}
	if s := q.Get("addr"); s != "" {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return f, fmt.Errorf("addr %q: want an IP address", s)
		}
		f.Addr = a
	}
	return f, nil
}

// Server serves a handler on one listener until its context ends.
type Server struct {
	ln   net.Listener
	srv  *http.Server
	path string // the unix socket file to remove at the end; "" for TCP
}

// headerTimeout bounds how long a client may take to send its request's
// headers: a stuck client holds one connection, never the server.
const headerTimeout = 10 * time.Second

// ListenUnix listens on a unix socket at path, mode 0600 (only masq's
// user may connect), replacing a stale socket file but nothing else.
func ListenUnix(path string, h http.Handler, log *slog.Logger) (*Server, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("--control %s exists and is not a socket; refusing to replace it", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("--control %s: something listens there already (another masq?)", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("--control: replace stale socket: %w", err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("--control: %w", err)
	}
	// Between bind and chmod the file has the umask's mode; the usual
	// 022 already keeps others from connecting (that takes write
	// permission).
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("--control: socket mode: %w", err)
	}
	return newServer(ln, h, path, log), nil
}

// ListenTCP listens on a TCP address ("127.0.0.1:9090", ":9090").
func ListenTCP(addr string, h http.Handler, log *slog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics: %w", err)
	}
	return newServer(ln, h, "", log), nil
}

func newServer(ln net.Listener, h http.Handler, path string, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{ln: ln, path: path, srv: &http.Server{Handler: h, ReadHeaderTimeout: headerTimeout,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}}
}

// Addr returns the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// shutdownGrace is how long Serve lets requests in progress finish once
// its context ends (a /pcap capture streaming back); then it cuts them.
const shutdownGrace = 2 * time.Second

// Serve serves until ctx ends, then stops taking requests, lets those in
// progress finish for shutdownGrace, closes every connection, removes
// the socket file and returns nil; or returns the error that stopped it.
// No handler runs once it has returned.
func (s *Server) Serve(ctx context.Context) error {
	stopped := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(stopped)
		grace, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		if s.srv.Shutdown(grace) != nil {
			s.srv.Close()
		}
	})
	err := s.srv.Serve(s.ln)
	if stop() {
		close(stopped) // Serve failed on its own: nothing to shut down
		s.srv.Close()
	}
	<-stopped
	if s.path != "" {
		os.Remove(s.path)
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Close stops a server that will not Serve.
func (s *Server) Close() {
	s.ln.Close()
	if s.path != "" {
		os.Remove(s.path)
	}
}
