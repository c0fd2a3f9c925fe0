package inbound

import (
	"errors"
	"fmt"
	"log/slog"

	"golang.org/x/sys/unix"

	"github.com/masqnet/masq/ports"
)

// bindSummary counts what forwarding every port skipped, for one log line
// at start.
type bindSummary struct {
	bound      int
	held       int      // ports something else in the pod holds
	heldNames  []string // the first maxListed of them
	privileged int      // ports below the pod's unprivileged start
	noIPv6     bool
	other      int
}

// maxListed bounds how many held ports the log line names.
const maxListed = 20

// skip records a port that could not be bound; it reports true when no
// more sockets can be opened at all.
func (s *bindSummary) skip(proto ports.Protocol, port uint16, err error) (stop bool) {
	switch {
	case errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE):
		return true
	case errors.Is(err, unix.EADDRINUSE):
		s.held++
		if len(s.heldNames) < maxListed {
			s.heldNames = append(s.heldNames, fmt.Sprintf("%d/%s", port, proto))
		}
	case errors.Is(err, unix.EACCES):
		s.privileged++
	default:
		s.other++
	}
	return false
}

// log writes the summary as one line, with the ports forwarded.
func (s *bindSummary) log(log *slog.Logger, forwarded ports.Set) {
	log.Info("inbound ports forwarded", "ports", forwarded.String(), "sockets", s.bound, "held_by_others", s.held, "held", s.heldNames,
		"privileged_skipped", s.privileged, "pod_without_ipv6", s.noIPv6, "other_failures", s.other)
}
