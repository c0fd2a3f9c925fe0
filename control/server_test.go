package control

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/masqnet/masq/flowtable"
)

// serve runs a control socket for cfg in a temporary directory until the
// test ends, and returns its path and a client.
func serve(t *testing.T, cfg Config) (string, *Client) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ctl.sock")
	s, err := ListenUnix(path, ControlHandler(cfg), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	c := NewClient(path)
	t.Cleanup(func() {
		c.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("socket file left behind: %v", err)
		}
	})
	return path, c
}

func testConfig(ready *atomic.Bool) (Config, *flowtable.Table) {
	tab := flowtable.New(nil)
	return Config{
		Status: func() Status { return Status{Version: "v1", Link: Link{Kind: "tap", MTU: 1500}} },
		Flows:  tab,
		Metrics: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprintln(w, "masq_build_info 1")
		}),
		Ready: func() error {
			if !ready.Load() {
				return errors.New("guest link down")
			}
			return nil
		},
		Handlers: map[string]http.Handler{"POST /pcap": http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprint(w, "pcap")
		})},
	}, tab
}

func TestControlSocket(t *testing.T) {
	var ready atomic.Bool
	cfg, tab := testConfig(&ready)
	tab.Open(flowtable.TCP, flowtable.Outbound, netip.MustParseAddrPort("10.0.2.2:1000"), netip.MustParseAddrPort("198.18.0.1:80"))
	tab.Open(flowtable.UDP, flowtable.Outbound, netip.MustParseAddrPort("10.0.2.2:1001"), netip.MustParseAddrPort("198.18.0.1:53"))
	path, c := serve(t, cfg)
	ctx := context.Background()

	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	if s, err := c.Status(ctx); err != nil || s.Version != "v1" || s.Link.MTU != 1500 {
		t.Errorf("Status = %+v, %v", s, err)
	}
	if f, err := c.Flows(ctx, url.Values{"proto": {"udp"}}); err != nil || len(f) != 1 || f[0].Remote.Port() != 53 {
		t.Errorf("Flows(proto=udp) = %+v, %v; want the udp flow", f, err)
	}
	if _, err := c.Flows(ctx, url.Values{"port": {"http"}}); err == nil || !strings.Contains(err.Error(), "400") {
		t.Errorf("Flows(port=http) error %v, want a 400", err)
	}
	if b, err := c.Raw(ctx, "/metrics", nil); err != nil || !strings.Contains(string(b), "masq_build_info") {
		t.Errorf("/metrics = %q, %v", b, err)
	}
	if b, err := c.Raw(ctx, "/healthz", nil); err != nil || strings.TrimSpace(string(b)) != "ok" {
		t.Errorf("/healthz = %q, %v", b, err)
	}
	if _, err := c.Raw(ctx, "/readyz", nil); err == nil || !strings.Contains(err.Error(), "guest link down") {
		t.Errorf("/readyz not ready: error %v, want 503 with the reason", err)
	}
	ready.Store(true)
	if _, err := c.Raw(ctx, "/readyz", nil); err != nil {
		t.Errorf("/readyz ready: %v", err)
	}
	resp, err := c.http.Post("http://masq/pcap", "text/plain", nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /pcap (a mounted handler): %v %v", resp, err)
	}
	resp.Body.Close()
}

func TestMetricsHandlerServesNoStatusNorExtras(t *testing.T) {
	var ready atomic.Bool
	cfg, _ := testConfig(&ready)
	s, err := ListenTCP("127.0.0.1:0", MetricsHandler(cfg), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	defer func() { cancel(); <-done }()
	base := "http://" + s.Addr().String()
	for path, want := range map[string]int{"/metrics": 200, "/healthz": 200, "/readyz": 503, "/status": 404, "/flows": 404} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, want)
		}
	}
	http.DefaultClient.CloseIdleConnections()
}

func TestListenUnixReplacesOnlyStaleSockets(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ListenUnix(file, http.NotFoundHandler(), nil); err == nil {
		t.Fatal("ListenUnix replaced a regular file")
	}
	path := filepath.Join(dir, "ctl.sock")
	first, err := ListenUnix(path, http.NotFoundHandler(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ListenUnix(path, http.NotFoundHandler(), nil); err == nil {
		t.Fatal("ListenUnix took over a socket something listens on")
	}
	first.ln.(interface{ SetUnlinkOnClose(bool) }).SetUnlinkOnClose(false)
	first.ln.Close() // a stale socket file stays
	second, err := ListenUnix(path, http.NotFoundHandler(), nil)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	second.Close()
}

func TestParseFilter(t *testing.T) {
	tests := []struct {
		query string
		want  flowtable.Filter
		ok    bool
	}{
		{"", flowtable.Filter{}, true},
		{"proto=icmp&port=53&addr=10.0.2.2", flowtable.Filter{Proto: flowtable.ICMP, HasProto: true, Port: 53,
			Addr: netip.MustParseAddr("10.0.2.2")}, true},
		{"proto=sctp", flowtable.Filter{}, false},
		{"port=0", flowtable.Filter{}, false},
		{"port=65536", flowtable.Filter{}, false},
		{"addr=10.0.2", flowtable.Filter{}, false},
	}
	for _, tt := range tests {
		q, _ := url.ParseQuery(tt.query)
		got, err := ParseFilter(q)
		if (err == nil) != tt.ok || (tt.ok && got != tt.want) {
			t.Errorf("ParseFilter(%q) = %+v, %v; want %+v, ok=%v", tt.query, got, err, tt.want, tt.ok)
		}
	}
}
