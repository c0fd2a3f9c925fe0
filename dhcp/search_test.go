package dhcp

import (
	"bytes"
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/rfc1035label"
)

// TestEncodeSearchRFC3397Example checks the byte vector of RFC 3397 §3.
func TestEncodeSearchRFC3397Example(t *testing.T) {
	got := encodeSearch([]string{"eng.apple.com", "marketing.apple.com"})
	want := []byte{
		3, 'e', 'n', 'g', 5, 'a', 'p', 'p', 'l', 'e', 3, 'c', 'o', 'm', 0,
		9, 'm', 'a', 'r', 'k', 'e', 't', 'i', 'n', 'g', 0xc0, 0x04,
	}
	if !bytes.Equal(got, want) {
		t.Errorf("encodeSearch = % x\nwant            % x", got, want)
	}
}

// TestEncodeSearchRoundTrip decodes the encoding with dhcpv4's own parser,
// the one every test of replies relies on.
func TestEncodeSearchRoundTrip(t *testing.T) {
	long := make([]string, 12)
	for i := range long {
		long[i] = strings.Repeat(string(rune('a'+i)), 30) + ".example.org"
	}
	tests := []struct {
		name    string
		domains []string
		maxLen  int // the encoding must not be longer; 0: no bound
	}{
		{"kubernetes", []string{"default.svc.cluster.local", "svc.cluster.local", "cluster.local"}, 31},
		{"single", []string{"lan"}, 5},
		{"unrelated", []string{"example.com", "example.net"}, 26},
		{"duplicate", []string{"corp.example.com", "corp.example.com"}, 20},
		{"shorter first", []string{"cluster.local", "svc.cluster.local", "default.svc.cluster.local"}, 35},
		// a.b.c ends in a pointer: x.a.b.c must not point at it.
		{"no nested pointers", []string{"b.c", "a.b.c", "x.a.b.c"}, 15},
		{"case kept", []string{"Example.COM", "example.com"}, 26},
		{"over 255 bytes", long, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := encodeSearch(tt.domains)
			if tt.maxLen > 0 && len(data) > tt.maxLen {
				t.Errorf("encoding is %d bytes, want at most %d: % x", len(data), tt.maxLen, data)
			}
			labels, err := rfc1035label.FromBytes(data)
			if err != nil {
				t.Fatalf("rfc1035label.FromBytes(% x): %v", data, err)
			}
			if !slices.Equal(labels.Labels, tt.domains) {
				t.Errorf("decoded %q, want %q", labels.Labels, tt.domains)
			}
			if got := decodeInPacket(t, data); !slices.Equal(got, tt.domains) {
				t.Errorf("decoded from a packet %q, want %q", got, tt.domains)
			}
		})
	}
}

// decodeInPacket sends data as option 119 through a whole packet, split
// into 255-byte options where needed, and reads it back.
func decodeInPacket(t *testing.T, data []byte) []string {
	t.Helper()
	labels, err := rfc1035label.FromBytes(data)
	if err != nil {
		t.Fatal(err)
	}
	p, err := dhcpv4.New(dhcpv4.WithHwAddr(net.HardwareAddr{2, 0, 0, 0, 0, 1}),
		dhcpv4.WithOption(dhcpv4.OptDomainSearch(labels)))
	if err != nil {
		t.Fatal(err)
	}
	back, err := dhcpv4.FromBytes(p.ToBytes())
	if err != nil {
		t.Fatal(err)
	}
	ds := back.DomainSearch()
	if ds == nil {
		t.Fatal("no option 119 in the packet read back")
	}
	return ds.Labels
}

func TestCheckDomain(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"cluster.local", true},
		{"default.svc.cluster.local", true},
		{"_tcp.example.com", true},
		{"xn--bcher-kva.example", true},
		{strings.Repeat("a", 63) + ".com", true},
		{strings.Repeat("a", 64) + ".com", false},
		{strings.Repeat("abcdefghi.", 25) + "abc", true}, // 253 bytes
		{strings.Repeat("abcdefghi.", 25) + "abcd", false},
		{"", false},
		{"a..b", false},
		{".example.com", false},
		{"example.com.", false}, // callers strip the trailing dot
		{"bad!char.com", false},
		{"sp ace.com", false},
		{"bücher.example", false},
	}
	for _, tt := range tests {
		err := checkDomain(tt.name)
		if (err == nil) != tt.ok {
			t.Errorf("checkDomain(%q) = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}

func TestLongestDomain(t *testing.T) {
	tests := []struct {
		search []string
		want   string
	}{
		{nil, ""},
		{[]string{"cluster.local"}, "cluster.local"},
		{[]string{"svc.cluster.local", "default.svc.cluster.local", "cluster.local"}, "default.svc.cluster.local"},
		{[]string{"aaa.com", "bbb.com"}, "aaa.com"},
	}
	for _, tt := range tests {
		if got := LongestDomain(tt.search); got != tt.want {
			t.Errorf("LongestDomain(%q) = %q, want %q", tt.search, got, tt.want)
		}
	}
}

func TestOptionSize(t *testing.T) {
	for _, tt := range []struct{ n, want int }{{0, 0}, {1, 3}, {255, 257}, {256, 260}, {510, 514}} {
		if got := optionSize(tt.n); got != tt.want {
			t.Errorf("optionSize(%d) = %d, want %d", tt.n, got, tt.want)
		}
	}
}
