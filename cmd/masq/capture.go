package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/masqnet/masq/capture"
)

// captureDialTimeout bounds connecting to the control socket: it is
// local, so anything longer means nobody listens.
const captureDialTimeout = 5 * time.Second

// captureHeaderGrace is how much longer than the capture itself `masq
// capture` waits for the answer to begin: the server flushes and rewinds
// its file first.
const captureHeaderGrace = 30 * time.Second

// newCaptureCommand builds `masq capture`.
func newCaptureCommand() *cobra.Command {
	var control string
	var seconds int
	cmd := &cobra.Command{
		Use:   "capture",
		Short: "Capture a running masq's guest link for N seconds, as pcap on stdout",
		Long: "capture asks the masq listening on the control socket PATH (its --control) to record\n" +
			"every frame on the guest's link, both ways, for N seconds (at most its --pcap-max-bytes),\n" +
			"and writes the pcap file to stdout: `masq capture --control PATH --seconds 10 > vm.pcap`,\n" +
			"then `tcpdump -r vm.pcap` or Wireshark. Counts go to stderr.",
		Example: "  masq capture --control /run/masq/control.sock --seconds 10 > vm.pcap\n" +
			"  masq capture --control /run/masq/control.sock | tcpdump -n -r -",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if control == "" {
				return &usageError{errors.New("--control: give the control socket of the masq to capture from (its --control PATH)")}
			}
			if seconds < 1 || seconds > capture.MaxSeconds {
				return &usageError{fmt.Errorf("--seconds %d: must be 1 to %d (use masq run --pcap for longer)", seconds, capture.MaxSeconds)}
			}
			out := cmd.OutOrStdout()
			if isTerminal(out) {
				return &usageError{errors.New("stdout is a terminal: redirect the capture to a file (masq capture ... > vm.pcap) or pipe it to tcpdump -r -")}
			}
			return liveCapture(cmd.Context(), control, seconds, out, cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVar(&control, "control", "", "control socket of the running masq (its --control `PATH`)")
	cmd.Flags().IntVar(&seconds, "seconds", 10, fmt.Sprintf("capture for `N` seconds, 1..%d", capture.MaxSeconds))
	return cmd
}

// liveCapture POSTs /pcap?seconds=N to the HTTP server on the unix socket
// control, copies the capture to out and its counts to status.
func liveCapture(ctx context.Context, control string, seconds int, out, status io.Writer) error {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{Timeout: captureDialTimeout}).DialContext(ctx, "unix", control)
		},
		ResponseHeaderTimeout: time.Duration(seconds)*time.Second + captureHeaderGrace,
	}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://masq/pcap?seconds="+strconv.Itoa(seconds), nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return fmt.Errorf("--control %s: %w", control, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("masq at %s: capture refused: %s: %s", control, resp.Status, strings.TrimSpace(string(msg)))
	}
	n, err := io.Copy(out, resp.Body)
	if err != nil {
		return fmt.Errorf("receive the capture: %w", err)
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return fmt.Errorf("receive the capture: %d of %d bytes", n, resp.ContentLength)
	}
	h := resp.Header
	fmt.Fprintf(status, "masq capture: %s frames, %d bytes; %s dropped (output too slow); size cap reached: %s\n",
		h.Get(capture.HeaderFrames), n, h.Get(capture.HeaderDropped), h.Get(capture.HeaderCapped))
	return nil
}

// isTerminal reports whether w is a terminal, where a pcap file is noise.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// parsePCAPMaxBytes parses --pcap-max-bytes: a size of at least
// capture.MinMaxBytes.
func parsePCAPMaxBytes(s string) (int64, error) {
	n, err := parseSize("--pcap-max-bytes", s)
	if err == nil && n < capture.MinMaxBytes {
		err = fmt.Errorf("--pcap-max-bytes %s: must be at least %d bytes (a capture holds whole frames)", s, capture.MinMaxBytes)
	}
	return n, err
}

// parseSize parses a size flag: bytes, or a whole number of KiB, MiB or
// GiB ("100MiB").
func parseSize(flag, s string) (int64, error) {
	num, mult := s, int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}} {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			num, mult = n, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > (1<<63-1)/mult {
		return 0, fmt.Errorf("%s %q: want a size in bytes, or a whole number of KiB, MiB or GiB, like 100MiB", flag, s)
	}
	return n * mult, nil
}
