package dhcp

import (
	"errors"
	"fmt"
	"strings"
)

// RFC 1035 §2.3.4 limits: 63 bytes a label, 255 bytes a name on the wire,
// which is 253 characters in dotted text form without the trailing dot.
const (
	maxLabelLen = 63
	maxNameLen  = 253
)

// maxPointer is the largest offset a 14-bit RFC 1035 compression pointer
// can hold.
const maxPointer = 0x3fff

// LongestDomain returns the longest of search (the first one on a tie), or
// "" when search is empty. KubeVirt gives the guest this as its domain name
// (option 15): in a pod it is the most specific one, <ns>.svc.cluster.local.
func LongestDomain(search []string) string {
	longest := ""
	for _, d := range search {
		if len(d) > len(longest) {
			longest = d
		}
	}
	return longest
}

// checkDomain reports why name, in dotted text form without a trailing dot,
// cannot be sent as a search domain: an empty label, a label over 63 bytes,
// a name over 253 bytes, or a byte other than a letter, digit, '-' or '_'.
func checkDomain(name string) error {
	if name == "" {
		return errors.New("empty name")
	}
	if len(name) > maxNameLen {
		return fmt.Errorf("%d bytes long, more than %d", len(name), maxNameLen)
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" {
			return errors.New("empty label")
		}
		if len(label) > maxLabelLen {
			return fmt.Errorf("label %.20q... is %d bytes long, more than %d", label, len(label), maxLabelLen)
		}
		for i := 0; i < len(label); i++ {
			if !domainByte(label[i]) {
				return fmt.Errorf("byte %q not allowed (letters, digits, '-' and '_')", label[i])
			}
		}
	}
	return nil
}

// domainByte reports whether c may appear in a search domain label. '_' is
// accepted because real zones (service records, some Active Directory
// domains) use it and resolvers pass it through.
func domainByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

// encodeSearch returns domains as the data of option 119 (RFC 3397): each
// name as RFC 1035 labels, with a repeated suffix replaced by a compression
// pointer to its first occurrence. Pointer offsets count from the start of
// the option data, across the split into 255-byte options (RFC 3396).
//
// A pointer only ever targets a name written out in full up to its zero
// byte, never one that itself ends in a pointer: dhcpv4's decoder (and some
// clients) reject a pointer that leads to another pointer. The domains must
// have passed checkDomain.
func encodeSearch(domains []string) []byte {
	var out []byte
	suffixes := make(map[string]int) // suffix -> offset of its first label
	for _, d := range domains {
		labels := strings.Split(d, ".")
		offsets := make([]int, 0, len(labels))
		pointer := -1
		for i, label := range labels {
			if off, ok := suffixes[strings.Join(labels[i:], ".")]; ok {
				pointer = off
				break
			}
			offsets = append(offsets, len(out))
			out = append(out, byte(len(label)))
			out = append(out, label...)
		}
		if pointer >= 0 {
			out = append(out, 0xc0|byte(pointer>>8), byte(pointer))
			continue
		}
		out = append(out, 0)
		for i, off := range offsets {
			if off <= maxPointer {
				suffixes[strings.Join(labels[i:], ".")] = off
			}
		}
	}
	return out
}

// optionSize returns how many bytes n bytes of option data take in a packet:
// the data plus a code and length byte for each 255-byte piece (RFC 3396).
func optionSize(n int) int {
	if n == 0 {
		return 0
	}
	return n + 2*((n+254)/255)
}
