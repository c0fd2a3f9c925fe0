package masq

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/masqnet/masq/capture"
)

// DefaultPCAPMaxBytes caps a capture when Config.PCAPMaxBytes is 0: about
// a minute of a busy guest at 10 Mbit/s, or the first frames of a fast
// transfer; enough for the exchange that goes wrong, never a full disk.
const DefaultPCAPMaxBytes = 100 << 20

// pcapMaxBytes is the cap of each capture, --pcap's and each live one's.
func (c Config) pcapMaxBytes() int64 {
	if c.PCAPMaxBytes == 0 {
		return DefaultPCAPMaxBytes
	}
	return c.PCAPMaxBytes
}

func (c Config) validatePCAP() error {
	if c.PCAPMaxBytes != 0 && c.PCAPMaxBytes < capture.MinMaxBytes {
		return fmt.Errorf("--pcap-max-bytes %d: must be at least %d bytes (a capture holds whole frames)", c.PCAPMaxBytes, capture.MinMaxBytes)
	}
	return nil
}

// pcapFile is --pcap: the file and the capture recording into it. A nil
// *pcapFile is no --pcap, and its methods do nothing.
type pcapFile struct {
	path string
	f    *os.File
	c    *capture.Capture
	log  *slog.Logger
}

// createPCAP creates (or truncates) the --pcap file, mode 0600: frames
// hold whatever the guest sends. An empty path is no --pcap.
func createPCAP(path string) (*pcapFile, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("--pcap: %w", err)
	}
	return &pcapFile{path: path, f: f}, nil
}

// start records every frame on ep into the file, at most max bytes.
func (p *pcapFile) start(ep *capture.Endpoint, max int64, log *slog.Logger) error {
	if p == nil {
		return nil
	}
	p.log = log.With("pcap", p.path)
	c, err := ep.Start(p.f, capture.Options{MaxBytes: max, Logger: p.log})
	if err != nil {
		return fmt.Errorf("--pcap: %w", err)
	}
	p.c = c
	p.log.Info("packet capture", "max_bytes", max)
	return nil
}

// close stops the capture, writes what it holds and closes the file.
func (p *pcapFile) close() {
	if p == nil {
		return
	}
	if p.c != nil {
		st, err := p.c.Stop()
		p.log.Info("packet capture stopped", "frames", st.Frames, "dropped", st.Dropped, "bytes", st.Bytes, "capped", st.Capped)
		if err != nil {
			p.log.Error("packet capture incomplete", "err", err)
		}
	}
	if err := p.f.Close(); err != nil && p.log != nil {
		p.log.Error("close the packet capture", "err", err)
	}
}
