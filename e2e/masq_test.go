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

// proc is a program run in the background (masq, a netpeer server),
// usually inside a namespace through ip netns exec, which execs it: the
// process is the program itself.
type proc struct {
	name   string // for logs: "masq", "masq#2", "http server"
	cmd    *exec.Cmd
	stderr *syncBuffer   // its stdout and stderr
	done   chan struct{} // closed when the process has been waited for
	err    error         // cmd.Wait's result, once done is closed
}

// startMasq runs `masq run` in tp's pod namespace with the tap in tp's guest
// namespace and extra args, waits until it is ready, and ends it in
// t.Cleanup, logging its stderr if t failed.
func startMasq(t *testing.T, tp *topology, name string, args ...string) *proc {
	t.Helper()
	argv := []string{"netns", "exec", tp.Pod, masqBinary(t), "run",
		"--guest-netns", tp.GuestPath(), "--tap", tapName, "--log-level", "debug"}
	p := startProc(t, name, "ip", append(argv, args...)...)
	p.waitReady(t, readyLine, readyTimeout)
	return p
}

// startProc starts a background process and ends it in t.Cleanup, logging
// its output if t failed.
func startProc(t *testing.T, name, prog string, args ...string) *proc {
	t.Helper()
	p := &proc{
		name:   name,
		cmd:    exec.Command(prog, args...),
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
	return p
}

// waitReady fails t unless the process prints line within timeout.
func (p *proc) waitReady(t *testing.T, line string, timeout time.Duration) {
	t.Helper()
	exited := false
	ready := waitFor(timeout, func() bool {
		select {
		case <-p.done:
			exited = true
			return true
		default:
			return strings.Contains(p.stderr.String(), line)
		}
	})
	switch {
	case exited:
		t.Fatalf("%s exited before it was ready: %v", p.name, p.err)
	case !ready:
		t.Fatalf("%s did not print %s within %v", p.name, line, timeout)
	}
}

// stop sends SIGTERM and returns masq's exit code, failing t if it does not
// exit within stopTimeout.
func (p *proc) stop(t *testing.T) int {
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
func (p *proc) kill() {
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
func (p *proc) log() string { return p.stderr.String() }
