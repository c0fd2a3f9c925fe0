package capture

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/masqnet/masq/internal/testkit"
)

// liveServer serves NewHandler for ep at POST /pcap on a unix socket of
// the test's and returns a client for it and the handler's temp dir.
func liveServer(t *testing.T, ep *Endpoint, maxBytes int64) (*http.Client, string) {
	t.Helper()
	dir := t.TempDir()
	h, err := NewHandler(ep, HandlerConfig{MaxBytes: maxBytes, TempDir: filepath.Join(dir, "tmp")})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "tmp"), 0o700); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/pcap", h)
	sock := testkit.ServeUnix(t, mux)
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}, filepath.Join(dir, "tmp")
}

// traffic writes frames of size through ep every interval until the test
// ends.
func traffic(t *testing.T, ep *Endpoint, size int, interval time.Duration) []byte {
	t.Helper()
	f := frame(size)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		pkt := outbound(f, size)
		defer pkt.DecRef()
		var pkts stack.PacketBufferList
		pkts.PushBack(pkt)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				ep.WritePackets(pkts)
			}
		}
	})
	t.Cleanup(func() {
		close(stop)
		wg.Wait()
	})
	return f
}

func TestLiveCaptureSendsThePCAPOfItsWindow(t *testing.T) {
	ep, _, _ := newTestEndpoint(t)
	client, tmp := liveServer(t, ep, 1<<20)
	f := traffic(t, ep, 200, 10*time.Millisecond)
	start := time.Now().Truncate(time.Microsecond)
	resp, err := client.Post("http://masq/pcap?seconds=1", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	end := time.Now()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /pcap?seconds=1: %s, %v:\n%s", resp.Status, err, body)
	}
	if took := end.Sub(start); took < time.Second || took > 10*time.Second {
		t.Errorf("a 1-second capture took %v", took)
	}
	if ct := resp.Header.Get("Content-Type"); ct != ContentType {
		t.Errorf("Content-Type %q, want %q", ct, ContentType)
	}
	recs := parse(t, body)
	if len(recs) < 10 {
		t.Errorf("%d frames in a second of a frame every 10ms, want dozens", len(recs))
	}
	if n := resp.Header.Get(HeaderFrames); n != strconv.Itoa(len(recs)) {
		t.Errorf("%s: %s, want %d", HeaderFrames, n, len(recs))
	}
	for i, r := range recs {
		if string(r.Frame) != string(f) || r.Time.Before(start) || r.Time.After(end) {
			t.Fatalf("record %d: %d bytes at %v; want the %d-byte frame within [%v, %v]", i, len(r.Frame), r.Time, len(f), start, end)
		}
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("the capture left %d files in its temp dir", len(left))
	}
	if ep.state.Load().captures != nil {
		t.Error("the capture is still on the endpoint")
	}
}

func TestLiveCaptureBadRequests(t *testing.T) {
	ep, _, _ := newTestEndpoint(t)
	client, _ := liveServer(t, ep, 1<<20)
	for _, tc := range []struct {
		method, query string
		status        int
		says          string
	}{
		{"GET", "seconds=1", http.StatusMethodNotAllowed, "POST"},
		{"POST", "", http.StatusBadRequest, "seconds: missing"},
		{"POST", "seconds=ten", http.StatusBadRequest, `seconds="ten"`},
		{"POST", "seconds=0", http.StatusBadRequest, "1 to 300"},
		{"POST", "seconds=301", http.StatusBadRequest, "1 to 300"},
		{"POST", "seconds=1.5", http.StatusBadRequest, "whole number"},
		{"POST", "seconds=-1", http.StatusBadRequest, "1 to 300"},
	} {
		req, _ := http.NewRequest(tc.method, "http://masq/pcap?"+tc.query, nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || !strings.Contains(string(body), tc.says) {
			t.Errorf("%s /pcap?%s: %s %q; want %d saying %q", tc.method, tc.query, resp.Status, body, tc.status, tc.says)
		}
	}
	if _, err := NewHandler(ep, HandlerConfig{MaxBytes: 100}); err == nil {
		t.Error("NewHandler with a 100-byte cap succeeded")
	}
}

// TestLiveCaptureOneAtATime: a second live capture while one runs gets
// 429; one whose client goes away ends at once and frees the way.
func TestLiveCaptureOneAtATime(t *testing.T) {
	ep, _, _ := newTestEndpoint(t)
	client, tmp := liveServer(t, ep, 1<<20)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, "POST", "http://masq/pcap?seconds=300", nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		first <- err
	}()
	testkit.WaitFor(t, func() bool { return ep.state.Load().captures != nil }, "the first capture to start")
	resp, err := client.Post("http://masq/pcap?seconds=1", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("a second capture got %s, want 429", resp.Status)
	}
	cancel()
	select {
	case <-first:
	case <-time.After(10 * time.Second):
		t.Fatal("the first request did not end within 10s of its cancellation")
	}
	testkit.WaitFor(t, func() bool { return ep.state.Load().captures == nil }, "the abandoned capture to stop")
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("the abandoned capture left %d files in its temp dir", len(left))
	}
	resp, err = client.Post("http://masq/pcap?seconds=1", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("a capture after the abandoned one got %s, want 200", resp.Status)
	}
}

// TestLiveCaptureEndsAtItsCap: a long capture of busy traffic ends when
// the cap is reached, not after its seconds, within the cap.
func TestLiveCaptureEndsAtItsCap(t *testing.T) {
	ep, _, _ := newTestEndpoint(t)
	client, _ := liveServer(t, ep, 8192)
	traffic(t, ep, 500, time.Millisecond)
	start := time.Now()
	resp, err := client.Post("http://masq/pcap?seconds=300", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /pcap?seconds=300: %s, %v:\n%s", resp.Status, err, body)
	}
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("a capture capped after ~16 frames took %v", took)
	}
	if len(body) > 8192 || resp.Header.Get(HeaderCapped) != "true" {
		t.Errorf("%d bytes, %s: %s; want at most 8192 and capped", len(body), HeaderCapped, resp.Header.Get(HeaderCapped))
	}
	if recs := parse(t, body); len(recs) == 0 {
		t.Error("no frames in the capped capture")
	}
}
