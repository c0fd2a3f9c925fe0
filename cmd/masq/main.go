// Command masq is the command line of masquerade networking for virtual
// machines: flags become a masq.Config, signals end masq.Run, errors become
// exit codes. It holds no logic of its own.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // masq started and then failed
	exitUsage   = 2 // bad flags or configuration; nothing was started
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	raiseFileLimit()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

// run executes the command line args and returns the exit code.
func run(ctx context.Context, args []string) int {
	root := newRootCommand()
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(os.Stderr, "masq: %v\n", err)
	var usage *usageError
	if errors.As(err, &usage) {
		return exitUsage
	}
	return exitFailure
}

// newRootCommand builds the command tree.
func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "masq",
		Short: "Masquerade networking for virtual machines, in user space",
		Long: "masq terminates a VM's tap device in a user-space network stack and carries\n" +
			"the guest's traffic through the pod's own sockets: no kernel NAT rules.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err} })
	root.AddCommand(newRunCommand(), newKubevirtCommand(), newVersionCommand())
	root.AddCommand(newCaptureCommand())
	root.AddCommand(newStatusCommand(), newFlowsCommand())
	return root
}

// newVersionCommand prints the build's version.
func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print masq's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(cmd.OutOrStdout(), "masq %s\n", version)
			return nil
		},
	}
}

// usageError marks errors caused by the command line; they exit 2.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// raiseFileLimit lifts the open-file limit as far as the process may:
// forwarding every port of the pod takes a socket per port and protocol
// (about 75,000). Go already raises the soft limit to the hard one; a
// process with CAP_SYS_RESOURCE may raise the hard one up to fs.nr_open.
// Failure is fine: masq forwards as many ports as the limit allows and
// says so.
func raiseFileLimit() {
	const want = 1 << 20
	var lim unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &lim) != nil || lim.Max >= want {
		return
	}
	max := uint64(want)
	if b, err := os.ReadFile("/proc/sys/fs/nr_open"); err == nil {
		if n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil && n < max {
			max = n
		}
	}
	if max > lim.Max {
		unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: max, Max: max})
	}
}
