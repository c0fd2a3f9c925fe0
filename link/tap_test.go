package link

import (
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestFromFD(t *testing.T) {
	tests := []struct {
		name    string
		open    func(t *testing.T) int
		wantErr string
	}{
		{"seqpacket socket", socket(unix.SOCK_SEQPACKET), ""},
		{"datagram socket", socket(unix.SOCK_DGRAM), ""},
		{"stream socket", socket(unix.SOCK_STREAM), "want SOCK_SEQPACKET or SOCK_DGRAM"},
		{"regular file", func(t *testing.T) int {
			f, err := os.CreateTemp(t.TempDir(), "notatap")
			if err != nil {
				t.Fatal(err)
			}
			fd, err := unix.Dup(int(f.Fd()))
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			return fd
		}, "neither a tap device nor a packet socket"},
		{"negative", func(*testing.T) int { return -1 }, "not a file descriptor"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fd := tt.open(t)
			d, err := TapFromFD(fd)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("FromFD = %v, want error containing %q", err, tt.wantErr)
				}
				if fd >= 0 {
					unix.Close(fd)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d.FD() != fd || d.Created() {
				t.Fatalf("device fd %d created %v, want fd %d not created", d.FD(), d.Created(), fd)
			}
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// socket returns an opener of one end of an AF_UNIX socketpair of typ; the
// other end is closed with the test.
func socket(typ int) func(t *testing.T) int {
	return func(t *testing.T) int {
		fds, err := unix.Socketpair(unix.AF_UNIX, typ|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Close(fds[1]) })
		return fds[0]
	}
}

func TestOpenRefusesMissingNamespace(t *testing.T) {
	_, err := OpenTap(TapConfig{Name: "tap0", Netns: "/nonexistent/netns"})
	if err == nil || !strings.Contains(err.Error(), `"/nonexistent/netns"`) {
		t.Fatalf("Open in a missing namespace = %v, want an error naming it", err)
	}
}
