package e2e

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	// readyTimeout bounds masq's start until it logs readyLine.
	readyTimeout = 15 * time.Second
	// stopTimeout bounds masq's exit after SIGTERM.
	stopTimeout = 10 * time.Second
	// readyLine is what masq logs once DHCP is being served.
	readyLine = `msg="masq ready"`
)

// masqProc is a masq run inside a topology's pod namespace.
type masqProc struct {
	name   string // for logs: "masq", "masq#2"
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan struct{} // closed when the process has been waited for
	err    error         // cmd.Wait's result, once done is closed
}

// startMasq runs `masq run` in tp's pod namespace with the tap in tp's guest
// namespace and extra args, waits until it is ready, and ends it in
// t.Cleanup, logging its stderr if t failed.
func startMasq(t *testing.T, tp *topology, name string, args ...string) *masqProc {
	t.Helper()
	argv := []string{"netns", "exec", tp.Pod, masqBinary(t), "run",
		"--guest-netns", tp.GuestPath(), "--tap", tapName, "--log-level", "debug"}
	p := &masqProc{
		name:   name,
		cmd:    exec.Command("ip", append(argv, args...)...), // ip execs masq: same pid.
		stderr: &syncBuffer{},
		done:   make(chan struct{}),
	}
	p.cmd.Stdout = p.stderr
	p.cmd.Stderr = p.stderr
	p.cmd.WaitDelay = time.Second
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("%s output:\n%s", p.name, p.stderr)
		}
	})
	p.waitReady(t)
	return p
}

// waitReady fails t unless masq logs readyLine within readyTimeout.
func (p *masqProc) waitReady(t *testing.T) {
	t.Helper()
	exited := false
	ready := waitFor(readyTimeout, func() bool {
		select {
		case <-p.done:
			exited = true
			return true
		default:
			return strings.Contains(p.stderr.String(), readyLine)
		}
	})
	switch {
	case exited:
		t.Fatalf("%s exited before it was ready: %v", p.name, p.err)
	case !ready:
		t.Fatalf("%s did not log %s within %v", p.name, readyLine, readyTimeout)
	}
}

// stop sends SIGTERM and returns masq's exit code, failing t if it does not
// exit within stopTimeout.
func (p *masqProc) stop(t *testing.T) int {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatalf("SIGTERM %s: %v", p.name, err)
	}
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(stopTimeout):
		t.Fatalf("%s did not exit within %v of SIGTERM", p.name, stopTimeout)
		return -1
	}
}

// kill ends masq if it still runs: SIGTERM, then SIGKILL.
func (p *masqProc) kill() {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		select {
		case <-p.done:
			return
		default:
		}
		_ = p.cmd.Process.Signal(sig)
		select {
		case <-p.done:
			return
		case <-time.After(stopTimeout / 2):
		}
	}
}

// log returns what masq has written so far.
func (p *masqProc) log() string { return p.stderr.String() }
