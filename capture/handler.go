package capture

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"time"
)

// Live captures over HTTP.
const (
	// MaxSeconds bounds a live capture's length: long enough to catch a
	// failing connection being retried, short enough that a forgotten
	// request ends; --pcap is for longer.
	MaxSeconds = 300

	// ContentType is the media type of a pcap file (IANA).
	ContentType = "application/vnd.tcpdump.pcap"

	// Headers of a live capture's response, with its Stats.
	HeaderFrames  = "Masq-Capture-Frames"
	HeaderDropped = "Masq-Capture-Dropped"
	HeaderCapped  = "Masq-Capture-Capped"
)

// HandlerConfig configures NewHandler.
type HandlerConfig struct {
	// MaxBytes caps each live capture (masq's --pcap-max-bytes); at least
	// MinMaxBytes.
	MaxBytes int64

	// TempDir is where a capture is buffered; empty means os.TempDir().
	// The file is unlinked as soon as it is created, so nothing is left
	// behind, whatever happens.
	TempDir string

	// Logger receives one line per capture. Nil means slog.Default().
	Logger *slog.Logger
}

// handler serves live captures on one Endpoint, one at a time.
type handler struct {
	ep   *Endpoint
	cfg  HandlerConfig
	log  *slog.Logger
	busy chan struct{} // holds a token while a capture runs
}

// NewHandler returns the handler of POST /pcap?seconds=N: it captures
// every frame on ep for N seconds (1 to MaxSeconds) into a temporary file,
// at most cfg.MaxBytes, and sends that file back as the response body
// (ContentType; the capture's counts in the Masq-Capture-* headers). A
// capture ends early when the cap is reached or the client goes away. One
// live capture runs at a time (a second gets 429 Too Many Requests); a
// --pcap capture runs beside it. A bad request gets 400 or 405 with a
// one-line reason.
func NewHandler(ep *Endpoint, cfg HandlerConfig) (http.Handler, error) {
	if cfg.MaxBytes < MinMaxBytes {
		return nil, fmt.Errorf("live capture size cap %d bytes: must be at least %d", cfg.MaxBytes, MinMaxBytes)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &handler{ep: ep, cfg: cfg, log: log, busy: make(chan struct{}, 1)}, nil
}

// ServeHTTP implements http.Handler.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "POST /pcap?seconds=N captures for N seconds", http.StatusMethodNotAllowed)
		return
	}
	seconds, err := parseSeconds(r.URL.Query().Get("seconds"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	select {
	case h.busy <- struct{}{}:
		defer func() { <-h.busy }()
	default:
		http.Error(w, "a live capture is already running; retry when it ends", http.StatusTooManyRequests)
		return
	}
	f, err := h.tempFile()
	if err != nil {
		h.log.Error("live capture", "err", err)
		http.Error(w, "cannot create the capture's temporary file: "+err.Error(), http.StatusInternalServerError)
		return
	}
	defer f.Close()
	st, err := h.capture(r, f, time.Duration(seconds)*time.Second)
	if r.Context().Err() != nil {
		return // the client went away: nobody to answer
	}
	if err != nil {
		h.log.Error("live capture", "err", err)
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", ContentType)
	w.Header().Set("Content-Length", strconv.FormatInt(st.Bytes, 10))
	w.Header().Set(HeaderFrames, strconv.FormatUint(st.Frames, 10))
	w.Header().Set(HeaderDropped, strconv.FormatUint(st.Dropped, 10))
	w.Header().Set(HeaderCapped, strconv.FormatBool(st.Capped))
	if _, err := io.Copy(w, io.LimitReader(f, st.Bytes)); err != nil {
		h.log.Debug("live capture: client went away", "err", err)
	}
}

// parseSeconds parses the seconds parameter.
func parseSeconds(s string) (int, error) {
	if s == "" {
		return 0, fmt.Errorf("seconds: missing; POST /pcap?seconds=N captures for N seconds (1 to %d)", MaxSeconds)
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > MaxSeconds {
		return 0, fmt.Errorf("seconds=%q: want a whole number of seconds from 1 to %d", s, MaxSeconds)
	}
	return n, nil
}

// tempFile creates the capture's file and unlinks it at once: it lives
// as long as it is open.
func (h *handler) tempFile() (*os.File, error) {
	f, err := os.CreateTemp(h.cfg.TempDir, "masq-capture-*.pcap")
	if err != nil {
		return nil, err
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// capture records into f for d, or until the cap or the client's
// departure, and rewinds f.
func (h *handler) capture(r *http.Request, f *os.File, d time.Duration) (Stats, error) {
	c, err := h.ep.Start(f, Options{MaxBytes: h.cfg.MaxBytes, Logger: h.log})
	if err != nil {
		return Stats{}, err
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-c.Capped():
	case <-r.Context().Done():
	}
	st, err := c.Stop()
	h.log.Info("live capture", "seconds", d.Seconds(), "frames", st.Frames, "dropped", st.Dropped, "bytes", st.Bytes, "capped", st.Capped)
	if err != nil {
		return st, fmt.Errorf("write the capture: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return st, fmt.Errorf("rewind the capture: %w", err)
	}
	return st, nil
}
