package main

import (
	"bytes"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/masqnet/masq/capture"
	"github.com/masqnet/masq/internal/testkit"
)

// TestCaptureCommand: `masq capture` against capture's own handler on a
// link carrying a frame every 10 ms writes a pcap file of that second.
func TestCaptureCommand(t *testing.T) {
	lower := channel.New(1024, 1500, "")
	defer lower.Close()
	ep := capture.New(lower)
	h, err := capture.NewHandler(ep, capture.HandlerConfig{MaxBytes: 1 << 20, TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("POST /pcap", h)
	sock := testkit.ServeUnix(t, mux)
	frame := bytes.Repeat([]byte{0xab}, 100)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(frame)})
			var pkts stack.PacketBufferList
			pkts.PushBack(pkt)
			ep.WritePackets(pkts)
			pkt.DecRef()
			lower.Drain()
		}
	})
	defer func() {
		close(stop)
		wg.Wait()
	}()
	out, err := execute(t, nil, "capture", "--control", sock, "--seconds", "1")
	if err != nil {
		t.Fatal(err)
	}
	_, recs, err := testkit.ParsePCAP(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) < 10 {
		t.Fatalf("%d frames in a second of a frame every 10ms, want dozens", len(recs))
	}
	for _, r := range recs {
		if !bytes.Equal(r.Frame, frame) {
			t.Fatalf("recorded %x, want %x", r.Frame, frame)
		}
	}
}

func TestCaptureCommandErrors(t *testing.T) {
	refusing := testkit.ServeUnix(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "a live capture is already running", http.StatusTooManyRequests)
	}))
	for _, tc := range []struct {
		args  []string
		usage bool
		want  string
	}{
		{[]string{"capture"}, true, "--control: give the control socket"},
		{[]string{"capture", "--control", refusing, "--seconds", "0"}, true, "--seconds 0: must be 1 to 300"},
		{[]string{"capture", "--control", refusing, "--seconds", "301"}, true, "--seconds 301"},
		{[]string{"capture", "--control", refusing, "--seconds", "1"}, false, "429 Too Many Requests: a live capture is already running"},
		{[]string{"capture", "--control", "/nonexistent/control.sock"}, false, "--control /nonexistent/control.sock"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, err := execute(t, nil, tc.args...)
			var usage *usageError
			if err == nil || errors.As(err, &usage) != tc.usage || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v (usage error: %v), want one containing %q (usage error: %v)", err, errors.As(err, &usage), tc.want, tc.usage)
			}
		})
	}
}

func TestPCAPFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--pcap-max-bytes", "10MB"}, `--pcap-max-bytes "10MB": want a size in bytes`},
		{[]string{"--pcap-max-bytes", "-1"}, `--pcap-max-bytes "-1"`},
		{[]string{"--pcap-max-bytes", "0"}, "--pcap-max-bytes 0: must be at least 4096 bytes"},
		{[]string{"--pcap-max-bytes", "1KiB"}, "--pcap-max-bytes 1KiB: must be at least 4096 bytes"},
		{[]string{"--pcap-max-bytes", "99999999999GiB"}, `--pcap-max-bytes "99999999999GiB"`},
		{[]string{"--mtu", "1500", "--pcap", "/nonexistent/dir/vm.pcap"}, "--pcap: open /nonexistent/dir/vm.pcap"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, err := execute(t, nil, append([]string{"run", "--tap", "t0"}, tc.args...)...)
			var usage *usageError
			if !errors.As(err, &usage) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want a usage error containing %q", err, tc.want)
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	for s, want := range map[string]int64{"4096": 4096, "100MiB": 100 << 20, "64KiB": 64 << 10, "2GiB": 2 << 30, "0": 0} {
		if got, err := parseSize("--x", s); got != want || err != nil {
			t.Errorf("parseSize(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
	for _, s := range []string{"", "MiB", "1.5MiB", "1 MiB", "1mib", "1MB", "1e6", "0x10"} {
		if _, err := parseSize("--x", s); err == nil || !strings.Contains(err.Error(), "--x") {
			t.Errorf("parseSize(%q): error %v, want one naming --x", s, err)
		}
	}
}
