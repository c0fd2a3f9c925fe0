package dhcp

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
)

// maxNameservers is glibc's MAXNS: the resolver of the pod uses only the
// first three nameserver lines, so the guest gets no more.
const maxNameservers = 3

// searchBudget bounds the bytes options 119 (search list) and 15 (domain
// name, the longest search domain) take together, so that an ACK with every
// option fits the 576-byte message every client must accept (RFC 2131 §2;
// busybox udhcpc drops a reply over 576+80 bytes). The 308 option bytes of
// such a message hold 38 of fixed options (53, 54, 51, 1, 3, 28, 26, end),
// 14 of three nameservers, 65 of a 63-byte hostname and 21 of a copied
// client identifier (RFC 6842; systemd-networkd sends 19 bytes), which
// leaves 170. A Kubernetes pod's three cluster domains take 55 of them.
const searchBudget = 170

// ResolvConf is what DHCP takes from a resolv.conf: its name servers and
// search domains, as the pod's resolver uses them.
type ResolvConf struct {
	// Nameservers are the first three nameserver addresses, IPv4 and IPv6,
	// without IPv6 zones.
	Nameservers []netip.Addr

	// Search is the search list of the last search or domain line, in
	// dotted form without trailing dots, minus the domains that are
	// malformed or do not fit in a DHCP reply.
	Search []string

	// Warnings say, one line each, what was skipped and why: bad
	// nameserver addresses, malformed or oversized search domains. The
	// caller logs them.
	Warnings []string
}

// ReadResolvConf reads and parses the resolv.conf at path; see
// ParseResolvConf. The error names path.
func ReadResolvConf(path string) (ResolvConf, error) {
	f, err := os.Open(path)
	if err != nil {
		return ResolvConf{}, fmt.Errorf("reading resolv.conf: %w", err)
	}
	defer f.Close()
	rc, err := ParseResolvConf(f)
	if err != nil {
		return ResolvConf{}, fmt.Errorf("reading resolv.conf %s: %w", path, err)
	}
	return rc, nil
}

// ParseResolvConf parses a resolv.conf as glibc does: nameserver lines in
// order, the last search or domain line wins (a domain line means a search
// list of that one domain), '#' and ';' start comments, other lines are
// ignored. What it cannot use it skips with a warning, never an error: the
// error is only r's.
func ParseResolvConf(r io.Reader) (ResolvConf, error) {
	var rc ResolvConf
	var search []string
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		fields := strings.Fields(stripComment(sc.Text()))
		if len(fields) < 2 {
			continue // blank, comment, or a keyword with no value
		}
		switch fields[0] {
		case "nameserver":
			rc.addNameserver(n, fields[1])
		case "search":
			search = rc.checkDomains(n, fields[1:])
		case "domain":
			search = rc.checkDomains(n, fields[1:2])
		}
	}
	if err := sc.Err(); err != nil {
		return ResolvConf{}, err
	}
	rc.Search = rc.fit(search)
	return rc, nil
}

// stripComment returns line up to its first '#' or ';'. Neither can appear
// in an address or a domain, so a comment may also end a line.
func stripComment(line string) string {
	if i := strings.IndexAny(line, "#;"); i >= 0 {
		return line[:i]
	}
	return line
}

// addNameserver appends the address of the nameserver line n.
func (rc *ResolvConf) addNameserver(n int, field string) {
	addr, err := netip.ParseAddr(field)
	if err != nil {
		rc.warnf("line %d: nameserver %q skipped: not an IP address", n, field)
		return
	}
	if len(rc.Nameservers) == maxNameservers {
		rc.warnf("line %d: nameserver %v skipped: only the first %d are used", n, addr, maxNameservers)
		return
	}
	rc.Nameservers = append(rc.Nameservers, addr.WithZone("").Unmap())
}

// checkDomains returns the usable domains of line n, without trailing dots.
func (rc *ResolvConf) checkDomains(n int, domains []string) []string {
	var ok []string
	for _, d := range domains {
		name := strings.TrimSuffix(d, ".")
		if err := checkDomain(name); err != nil {
			rc.warnf("line %d: search domain %.80q skipped: %v", n, d, err)
			continue
		}
		ok = append(ok, name)
	}
	return ok
}

// fit returns the domains, in order, that fit in searchBudget, skipping
// with a warning each one that would overflow it.
func (rc *ResolvConf) fit(domains []string) []string {
	var kept []string
	for _, d := range domains {
		try := append(kept[:len(kept):len(kept)], d)
		size := optionSize(len(encodeSearch(try))) + optionSize(len(LongestDomain(try)))
		if size > searchBudget {
			rc.warnf("search domain %q skipped: the search list would take %d bytes of a DHCP reply, more than %d", d, size, searchBudget)
			continue
		}
		kept = try
	}
	return kept
}

// warnf adds a warning.
func (rc *ResolvConf) warnf(format string, args ...any) {
	rc.Warnings = append(rc.Warnings, fmt.Sprintf(format, args...))
}
