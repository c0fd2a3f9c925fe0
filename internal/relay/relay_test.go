package relay

import (
	"net"
	"os"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

// fakeFlow counts its aborts.
type fakeFlow struct{ aborted atomic.Int32 }

func (f *fakeFlow) Abort() { f.aborted.Add(1) }

func TestRegistry(t *testing.T) {
	r := NewRegistry()
	a, b := &fakeFlow{}, &fakeFlow{}
	if !r.Track(a) || !r.Track(b) {
		t.Fatal("Track on an open registry refused")
	}
	if !r.Join() { // a goroutine someone else started, counted until it leaves
		t.Fatal("Join on an open registry refused")
	}
	ran := make(chan struct{})
	release := make(chan struct{})
	if !r.Spawn(func() { close(ran); <-release }) {
		t.Fatal("Spawn on an open registry refused")
	}
	<-ran
	r.Untrack(b)
	if r.Len() != 1 {
		t.Fatalf("Len = %d after one Untrack of two, want 1", r.Len())
	}
	open := r.Close()
	if len(open) != 1 || open[0] != a {
		t.Fatalf("Close returned %v, want the one open flow", open)
	}
	if r.Track(&fakeFlow{}) || r.Join() || r.Spawn(func() { t.Error("spawned on a closed registry") }) {
		t.Fatal("a closed registry took a new flow")
	}
	waited := make(chan struct{})
	go func() { r.Wait(); close(waited) }()
	select {
	case <-waited:
		t.Fatal("Wait returned with a tracked flow and a spawned goroutine still running")
	default:
	}
	r.Untrack(a)
	r.Leave()
	close(release)
	<-waited // bounded by the test's timeout: a hang here is the failure
}

func TestLimit(t *testing.T) {
	l := NewLimit(2)
	for i := range 2 {
		if !l.Reserve() {
			t.Fatalf("Reserve %d within the bound refused", i+1)
		}
	}
	if l.Reserve() {
		t.Fatal("Reserve beyond the bound granted")
	}
	if l.Limited() != 1 {
		t.Fatalf("Limited = %d, want 1", l.Limited())
	}
	l.Release()
	if !l.Reserve() {
		t.Fatal("Reserve after a Release refused")
	}
}

// podPair returns a pod connection over one end of a stream socketpair
// (a net.Conn with a file descriptor, as a pod's TCP socket is) and the
// other end's fd.
func podPair(t *testing.T, bufs *Pool) (*podConn, int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fds[0]), "pod")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); unix.Close(fds[1]) })
	return newPodConn(bufs, c), fds[1]
}

// TestPodReadDoesNotAllocate pins the claim of the copy loop's pod side:
// a read takes a pooled buffer and allocates nothing.
func TestPodReadDoesNotAllocate(t *testing.T) {
	bufs := NewPool()
	p, peer := podPair(t, bufs)
	msg := make([]byte, 1000)
	allocs := testing.AllocsPerRun(1000, func() {
		unix.Write(peer, msg)
		b, n, err := p.read()
		if err != nil || n != len(msg) {
			t.Fatalf("read %d, %v; want %d bytes", n, err, len(msg))
		}
		bufs.Put(b)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per pod read, want 0", allocs)
	}
}
