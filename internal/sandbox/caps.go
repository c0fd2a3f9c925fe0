package sandbox

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrCgo is returned when the binary was built with cgo: Go cannot then
// change every thread's capabilities, so it would keep them.
var ErrCgo = errors.New("this masq binary was built with cgo, where Go cannot drop capabilities on every thread; build it with CGO_ENABLED=0 (make build does)")

// capSet is one capability bit mask: bit N is capability N.
type capSet uint64

// has reports whether s holds capability c.
func (s capSet) has(c int) bool { return s&(1<<uint(c)) != 0 }

// capState is the calling thread's capability sets.
type capState struct{ effective, permitted, inheritable capSet }

// currentCaps reads the calling thread's capability sets.
func currentCaps() (capState, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return capState{}, fmt.Errorf("capget: %w", err)
	}
	join := func(lo, hi uint32) capSet { return capSet(lo) | capSet(hi)<<32 }
	return capState{
		effective:   join(data[0].Effective, data[1].Effective),
		permitted:   join(data[0].Permitted, data[1].Permitted),
		inheritable: join(data[0].Inheritable, data[1].Inheritable),
	}, nil
}

// dropCaps leaves every thread with the capabilities of keep it holds now,
// effective and permitted, and none other: the ambient and inheritable
// sets are emptied, and the bounding set too (but for keep) when the
// process may change it (CAP_SETPCAP). It returns the capabilities kept.
// The bounding set matters only across execve, which no_new_privs and the
// seccomp filter also close; it is dropped all the same, as passt does.
func dropCaps(keep capSet) (capSet, error) {
	have, err := currentCaps()
	if err != nil {
		return 0, err
	}
	// Ambient capabilities came before kernel 4.3: EINVAL means none.
	if err := allThreads(unix.SYS_PRCTL, unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		return 0, fmt.Errorf("clear ambient capabilities: %w", err)
	}
	if have.effective.has(unix.CAP_SETPCAP) {
		if err := dropBounding(keep); err != nil {
			return 0, err
		}
	}
	kept := keep & have.permitted
	if err := setCaps(kept); err != nil {
		return 0, err
	}
	return kept, nil
}

// dropBounding removes every capability but keep from the bounding set
// of every thread.
func dropBounding(keep capSet) error {
	for c := 0; c <= lastCap(); c++ {
		if keep.has(c) {
			continue
		}
		err := allThreads(unix.SYS_PRCTL, unix.PR_CAPBSET_DROP, uintptr(c), 0)
		if errors.Is(err, unix.EINVAL) { // beyond what this kernel knows
			break
		}
		if err != nil {
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
		}
	}
	return nil
}

// setCaps sets every thread's effective and permitted capabilities to s,
// its inheritable ones to none.
func setCaps(s capSet) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := [2]unix.CapUserData{
		{Effective: uint32(s), Permitted: uint32(s)},
		{Effective: uint32(s >> 32), Permitted: uint32(s >> 32)},
	}
	if err := allThreads(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0); err != nil {
		return fmt.Errorf("capset: %w", err)
	}
	return nil
}

// lastCap is the highest capability number the kernel knows.
func lastCap() int {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n >= 0 && n < 64 {
			return n
		}
	}
	return 63 // dropBounding stops at the first EINVAL
}

// allThreads makes a system call on every thread of the process; it fails
// with ErrCgo in a binary built with cgo. Pointer arguments stay valid
// for the whole call (uintptrescapes moves their objects to the heap).
//
//go:uintptrescapes
func allThreads(trap, a1, a2, a3 uintptr) error {
	_, _, errno := syscall.AllThreadsSyscall(trap, a1, a2, a3)
	switch errno {
	case 0:
		return nil
	case syscall.ENOTSUP:
		return ErrCgo
	}
	return errno
}
