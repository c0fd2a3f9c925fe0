package testkit

import (
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"
)

// ServeUnix serves h over HTTP on a unix socket in a temp dir until the
// test ends (the server closed and its goroutine ended) and returns the
// socket's path.
func ServeUnix(tb testing.TB, h http.Handler) string {
	tb.Helper()
	sock := filepath.Join(tb.TempDir(), "control.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		tb.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	tb.Cleanup(func() {
		srv.Close()
		<-done
	})
	return sock
}
