package ports

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// specSyntax says what a port spec item may be, for error messages.
const specSyntax = "want PORT or FIRST-LAST (1 to 65535), optionally followed by /tcp, /udp or /tcp+udp"

// Parse parses a port spec such as "80,443/tcp,53/udp,8000-8100,
// 5353/tcp+udp": comma-separated items, each a port or a range FIRST-LAST,
// optionally followed by /tcp, /udp or /tcp+udp (or /udp+tcp), in any
// case. An item without a protocol is TCP, as in KubeVirt. White space
// around items is allowed; items may overlap. An error quotes the first
// bad item and says what is allowed. Ports 0, 49152 and 49153 (see
// Reserved) are refused.
//
// The empty spec is an error: "forward every port" is the caller's
// decision, made before calling Parse.
func Parse(spec string) (Set, error) {
	if strings.TrimSpace(spec) == "" {
		return Set{}, errors.New("empty port list: name at least one port, or give no list to forward every port")
	}
	b := new(portBits)
	for item := range strings.SplitSeq(spec, ",") {
		ranges, err := parseItem(strings.TrimSpace(item))
		if err != nil {
			return Set{}, fmt.Errorf("port spec item %q: %w", item, err)
		}
		for _, r := range ranges {
			b.add(r)
		}
	}
	return b.set(), nil
}

// parseItem parses one item of a port spec into one range per protocol.
func parseItem(item string) ([]Range, error) {
	if item == "" {
		return nil, errors.New("empty item (two commas in a row, or a comma at an end): " + specSyntax)
	}
	ports, proto, hasProto := strings.Cut(item, "/")
	protos := []Protocol{TCP}
	if hasProto {
		var err error
		if protos, err = parseProtocols(proto); err != nil {
			return nil, err
		}
	}
	first, last, err := parseRange(ports)
	if err != nil {
		return nil, err
	}
	ranges := make([]Range, len(protos))
	for i, p := range protos {
		ranges[i] = Range{Proto: p, First: first, Last: last}
		if err := ranges[i].check(); err != nil {
			return nil, err
		}
	}
	return ranges, nil
}

// parseProtocols parses what follows the '/' of an item.
func parseProtocols(s string) ([]Protocol, error) {
	switch strings.ToLower(s) {
	case "tcp":
		return []Protocol{TCP}, nil
	case "udp":
		return []Protocol{UDP}, nil
	case "tcp+udp", "udp+tcp":
		return []Protocol{TCP, UDP}, nil
	}
	return nil, fmt.Errorf("unknown protocol %q: allowed are tcp, udp or tcp+udp", s)
}

// parseRange parses "PORT" or "FIRST-LAST".
func parseRange(s string) (first, last uint16, err error) {
	a, b, isRange := strings.Cut(s, "-")
	if first, err = parsePort(a); err != nil {
		return 0, 0, err
	}
	if !isRange {
		return first, first, nil
	}
	if last, err = parsePort(b); err != nil {
		return 0, 0, err
	}
	return first, last, nil
}

// parsePort parses a decimal port number, 1 to 65535.
func parsePort(s string) (uint16, error) {
	if s == "" || strings.Trim(s, "0123456789") != "" {
		return 0, fmt.Errorf("%q is not a port number: %s", s, specSyntax)
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("port %s out of range: allowed are 1 to 65535", s)
	}
	return uint16(n), nil
}
