package sandbox

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// setNoNewPrivs sets no_new_privs on every thread: no execve can grant
// privileges again (set-user-ID bits, file capabilities), and an
// unprivileged process may install a seccomp filter.
func setNoNewPrivs() error {
	if err := allThreads(unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0); err != nil {
		return fmt.Errorf("set no_new_privs: %w", err)
	}
	return nil
}
