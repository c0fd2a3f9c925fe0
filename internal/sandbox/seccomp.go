package sandbox

import (
	"fmt"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/bpf"
	"gvisor.dev/gvisor/pkg/seccomp"
)

// Deny is what a system call outside the allowlist does.
type Deny uint8

const (
	// DenyEPERM fails the call with EPERM: the one operation that made it
	// fails with an error masq already handles (a flow refused, a socket
	// not opened) and logs, and every other VM flow goes on. A call
	// missing from the allowlist on a rare path must not take a VM's whole
	// network down with it; an attacker gains nothing from the error.
	// This is what masq ships with.
	DenyEPERM Deny = iota

	// DenyCrash traps the call: the Go runtime dies with "SIGSYS: bad
	// system call" and the goroutine's stack, which names the call. The
	// tests run masq so, which proves the allowlist complete on every
	// path they take.
	DenyCrash
)

// action is d as a seccomp action.
func (d Deny) action() seccomp.Action {
	if d == DenyCrash {
		return seccomp.Trap
	}
	return seccomp.ReturnError.Code(uint16(unix.EPERM))
}

// String names d.
func (d Deny) String() string {
	if d == DenyCrash {
		return "crash"
	}
	return "EPERM"
}

// filter builds the seccomp program: the allowlist, deny's action for
// every other call, and death for a call of another architecture's ABI
// (x32, or int 0x80), which nothing in masq makes.
func filter(pid int, keepNetRaw bool, deny Deny) ([]bpf.Instruction, error) {
	prog := seccomp.Program{
		RuleSets: []seccomp.RuleSet{{Rules: allowlist(pid, keepNetRaw), Action: seccomp.Allow}},
		Options: seccomp.ProgramOptions{
			DefaultAction: deny.action(),
			BadArchAction: seccomp.KillProcess,
			HotSyscalls:   hotSyscalls(),
		},
	}
	instrs, _, err := prog.Build()
	if err != nil {
		return nil, fmt.Errorf("build seccomp filter: %w", err)
	}
	return instrs, nil
}

// installFilter installs instrs on every thread (SECCOMP_FILTER_FLAG_TSYNC);
// it sets no_new_privs on the way, as the kernel requires.
func installFilter(instrs []bpf.Instruction) error {
	if err := seccomp.SetFilter(instrs); err != nil {
		return fmt.Errorf("install seccomp filter: %w", err)
	}
	return nil
}
