package e2e

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// Small writes: 16 MiB written 100 bytes at a time with TCP_NODELAY, as
// interactive protocols write, through masq's default tap (virtio-net
// headers and TSO) between a real guest kernel and the outside host, each
// way, outbound and through a forwarded port. The bytes must all arrive
// in order: the sha256 the writer printed is the one the reader printed.
const (
	smallWritesSize  = 16 << 20
	smallWritesChunk = 100
	// smallWritesTimeout bounds one transfer: 16 MiB at the ~150 Mbit/s
	// that 100-byte writes reach takes about a second.
	smallWritesTimeout = 60 * time.Second
	// streamPortBase is the outside host's first stream server port: a
	// server per case, so that no case waits for the last one's port.
	streamPortBase = 7020
)

func TestSmallWrites(t *testing.T) {
	size, chunk := strconv.Itoa(smallWritesSize), strconv.Itoa(smallWritesChunk)
	tests := []struct {
		name string
		// server runs in serverNS (the outside host or the guest); the
		// client in the other, reaching to.
		guestServes bool
		serverArgs  []string
		clientArgs  []string
	}{
		{name: "outbound, the world writes", serverArgs: []string{"send", "-size", size, "-chunk", chunk}, clientArgs: []string{"pull"}},
		{name: "outbound, the guest writes", serverArgs: []string{"recv"}, clientArgs: []string{"push", "-size", size, "-chunk", chunk}},
		{name: "inbound, the client writes", guestServes: true, serverArgs: []string{"recv"}, clientArgs: []string{"push", "-size", size, "-chunk", chunk}},
		{name: "inbound, the guest writes", guestServes: true, serverArgs: []string{"send", "-size", size, "-chunk", chunk}, clientArgs: []string{"pull"}},
	}
	tp := newTopology(t, 1500)
	startMasq(t, tp, "masq", "--ports", fwdPort)
	guestStatic4(t, tp)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			serverNS, clientNS, listen, to := tp.Out, tp.Guest, "", ""
			if tt.guestServes {
				serverNS, clientNS, listen, to = tp.Guest, tp.Out, guest4+":"+fwdPort, podAddr4+":"+fwdPort
			}
			port := strconv.Itoa(streamPortBase + i)
			if !tt.guestServes {
				listen, to = outAddr4+":"+port, outAddr4+":"+port
			}
			srv := startPeer(t, serverNS, "stream server", append(tt.serverArgs, "-listen", listen)...)
			args := append(append([]string{}, tt.clientArgs...), "-to", to, "-timeout", smallWritesTimeout.String())
			code, out := runPeer(t, clientNS, smallWritesTimeout+5*time.Second, args...)
			if code != 0 {
				t.Fatalf("client exited %d:\n%s\nserver:\n%s", code, out, srv.log())
			}
			t.Logf("%s", strings.TrimSpace(out))
			var wrote, read string              // "N SHA256" of each side
			if field(out, "got_sha256") != "" { // push: the client wrote, the server read
				wrote = field(out, "sent") + " " + field(out, "sha256")
				read = field(out, "got") + " " + field(out, "got_sha256")
			} else { // pull: the server wrote
				read = field(out, "got") + " " + field(out, "sha256")
				sent := waitLine(t, srv, "sent ")
				wrote = field(sent, "n") + " " + field(sent, "sha256")
			}
			if wrote != read || !strings.HasPrefix(wrote, size+" ") {
				t.Fatalf("writer sent %q, reader got %q; want %s bytes, the same sha256", wrote, read, size)
			}
		})
	}
}

// waitLine waits up to 5s for a line of p's output starting with prefix
// and returns it.
func waitLine(t *testing.T, p *proc, prefix string) string {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		out := p.log()
		out = out[:strings.LastIndexByte(out, '\n')+1] // whole lines only: the last may still grow
		for _, line := range strings.Split(out, "\n") {
			if strings.HasPrefix(line, prefix) {
				return line
			}
		}
	}
	t.Fatalf("%s printed no %q line:\n%s", p.name, prefix, p.log())
	return ""
}
