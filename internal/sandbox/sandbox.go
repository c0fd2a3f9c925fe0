package sandbox

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Options says how far Apply confines the process.
type Options struct {
	// KeepNetRaw keeps CAP_NET_RAW, effective and permitted, when the
	// process holds it, and admits raw and packet sockets in the filter:
	// for the raw ICMP sockets guest pings take where the pod gives no
	// ping socket. Nothing else after setup needs it (--attach's AF_PACKET
	// socket is open before Apply).
	KeepNetRaw bool

	// NoSeccomp installs no system call filter (capabilities and
	// no_new_privs still go): for debugging a call the filter refuses.
	NoSeccomp bool

	// Deny is what a call outside the allowlist does; the zero value is
	// DenyEPERM, what production runs with.
	Deny Deny
}

// Report says what Apply did, for the start-up log.
type Report struct {
	// KeptCaps are the capabilities left: 0, or CAP_NET_RAW's bit.
	KeptCaps uint64
	// Seccomp reports a filter installed; Deny is its action.
	Seccomp bool
	Deny    Deny
	// Threads is how many threads Apply verified.
	Threads int
}

// Apply confines the whole process for the rest of its life: it drops
// every capability but those o keeps (ambient, inheritable, bounding,
// permitted, effective), sets no_new_privs and installs the seccomp
// allowlist, on every thread, then checks every thread's /proc status.
// It must be called once setup is complete: nothing needing a privilege
// or a call outside the allowlist may follow.
func Apply(o Options) (Report, error) {
	var keep capSet
	if o.KeepNetRaw {
		keep = 1 << unix.CAP_NET_RAW
	}
	kept, err := dropCaps(keep)
	if err != nil {
		return Report{}, fmt.Errorf("drop capabilities: %w", err)
	}
	if err := setNoNewPrivs(); err != nil {
		return Report{}, err
	}
	rep := Report{KeptCaps: uint64(kept), Deny: o.Deny}
	if !o.NoSeccomp {
		instrs, err := filter(os.Getpid(), o.KeepNetRaw, o.Deny)
		if err != nil {
			return Report{}, err
		}
		if err := installFilter(instrs); err != nil {
			return Report{}, err
		}
		rep.Seccomp = true
	}
	if rep.Threads, err = verify(uint64(kept), rep.Seccomp); err != nil {
		return Report{}, err
	}
	return rep, nil
}

// verify checks every thread's status against what Apply set, and returns
// how many threads it read.
func verify(kept uint64, filtered bool) (int, error) {
	threads, err := Threads(0)
	if err != nil {
		return 0, fmt.Errorf("read threads' status: %w", err)
	}
	if len(threads) == 0 {
		return 0, errors.New("read threads' status: none")
	}
	for _, t := range threads {
		switch {
		case t.CapEff != kept || t.CapPrm != kept || t.CapInh != 0 || t.CapAmb != 0:
			return 0, fmt.Errorf("thread %d kept capabilities: effective %#x, permitted %#x, inheritable %#x, ambient %#x",
				t.TID, t.CapEff, t.CapPrm, t.CapInh, t.CapAmb)
		case !t.NoNewPrivs:
			return 0, fmt.Errorf("thread %d has no no_new_privs", t.TID)
		case filtered && t.Seccomp != 2:
			return 0, fmt.Errorf("thread %d has no seccomp filter (Seccomp: %d)", t.TID, t.Seccomp)
		}
	}
	return len(threads), nil
}
