package dhcp

import (
	"errors"
	"io/fs"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
)

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

// TestReadResolvConfSamples parses the samples in testdata/resolv.
func TestReadResolvConfSamples(t *testing.T) {
	tests := []struct {
		file        string
		nameservers []netip.Addr
		search      []string
		warnings    []string // a substring of each warning, in order
	}{
		{"kubernetes.conf", addrs("10.96.0.10"),
			[]string{"default.svc.cluster.local", "svc.cluster.local", "cluster.local"}, nil},
		{"systemd-resolved.conf", addrs("127.0.0.53"), []string{"lan"}, nil},
		{"ipv6.conf", addrs("fd00:10:96::a", "fe80::1", "10.96.0.10"), []string{"example.com"},
			[]string{"line 5: nameserver 10.96.0.11 skipped: only the first 3"}},
		{"no-nameserver.conf", nil, []string{"corp.example.com"}, nil},
		{"bad-search.conf", addrs("10.0.0.1"),
			[]string{"good.example.com", "zone_with_underscore.example.com", "trailing.example.com"},
			[]string{
				`line 2: nameserver "not-an-address" skipped`,
				`line 4: search domain "a..b" skipped: empty label`,
				`line 4: search domain "." skipped: empty name`,
				`line 4: search domain "bad!char.com" skipped: byte '!'`,
				`skipped: label "this-label-is-way-to"... is 77 bytes long, more than 63`,
				`skipped: 258 bytes long, more than 253`,
			}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			rc, err := ReadResolvConf(filepath.Join("..", "testdata", "resolv", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(rc.Nameservers, tt.nameservers) {
				t.Errorf("nameservers %v, want %v", rc.Nameservers, tt.nameservers)
			}
			if !slices.Equal(rc.Search, tt.search) {
				t.Errorf("search %q, want %q", rc.Search, tt.search)
			}
			checkWarnings(t, rc.Warnings, tt.warnings)
		})
	}
}

func checkWarnings(t *testing.T, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%d warnings %q, want %d", len(got), got, len(want))
		return
	}
	for i := range want {
		if !strings.Contains(got[i], want[i]) {
			t.Errorf("warning %d %q, want it to contain %q", i, got[i], want[i])
		}
	}
}

func TestParseResolvConf(t *testing.T) {
	tests := []struct {
		name, text  string
		nameservers []netip.Addr
		search      []string
		warnings    int
	}{
		{"empty", "", nil, nil, 0},
		{"last search wins", "search a.com b.com\nsearch c.com\n", nil, []string{"c.com"}, 0},
		{"domain after search wins", "search a.com b.com\ndomain d.com\n", nil, []string{"d.com"}, 0},
		{"search after domain wins", "domain d.com\nsearch a.com\n", nil, []string{"a.com"}, 0},
		{"domain takes its first word", "domain d.com e.com\n", nil, []string{"d.com"}, 0},
		{"keyword without value ignored", "search a.com\nsearch\nnameserver\n", nil, []string{"a.com"}, 0},
		{"comments", "# nameserver 1.1.1.1\n; search x.com\nnameserver 9.9.9.9 # quad9\nsearch a.com;b.com\n",
			addrs("9.9.9.9"), []string{"a.com"}, 0},
		{"tabs and CRLF", "nameserver\t1.1.1.1\r\nsearch\ta.com\r\n", addrs("1.1.1.1"), []string{"a.com"}, 0},
		{"IPv4-mapped and zoned IPv6", "nameserver ::ffff:10.0.0.1\nnameserver fe80::53%eth0\n",
			addrs("10.0.0.1", "fe80::53"), nil, 0},
		{"garbage nameserver", "nameserver 10.0.0.300\nnameserver dns.google\n", nil, nil, 2},
		{"unknown lines ignored", "options ndots:5\nsortlist 10.0.0.0/8\nlookup file bind\n", nil, nil, 0},
		{"no newline at end", "nameserver 10.0.0.1", addrs("10.0.0.1"), nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc, err := ParseResolvConf(strings.NewReader(tt.text))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(rc.Nameservers, tt.nameservers) {
				t.Errorf("nameservers %v, want %v", rc.Nameservers, tt.nameservers)
			}
			if !slices.Equal(rc.Search, tt.search) {
				t.Errorf("search %q, want %q", rc.Search, tt.search)
			}
			if len(rc.Warnings) != tt.warnings {
				t.Errorf("warnings %q, want %d", rc.Warnings, tt.warnings)
			}
		})
	}
}

// TestParseResolvConfBudget drops the search domains that would not fit in
// a DHCP reply, and keeps a later one that still does.
func TestParseResolvConfBudget(t *testing.T) {
	var long []string
	for i := range 4 {
		long = append(long, strings.Repeat(string(rune('a'+i)), 40)+".example.com")
	}
	text := "search " + strings.Join(long, " ") + " short.example.com\n"
	rc, err := ParseResolvConf(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	// The first long name takes 54 bytes, each next one 43 (.example.com
	// is a pointer): two, with their headers and the domain name (option
	// 15), take 153 bytes, a third would take 196; short.example.com 161.
	want := []string{long[0], long[1], "short.example.com"}
	if !slices.Equal(rc.Search, want) {
		t.Errorf("search %q, want %q", rc.Search, want)
	}
	checkWarnings(t, rc.Warnings, []string{
		`search domain "cccc`, `search domain "dddd`,
	})
	size := optionSize(len(encodeSearch(rc.Search))) + optionSize(len(LongestDomain(rc.Search)))
	if size > searchBudget {
		t.Errorf("kept search list takes %d bytes, budget %d", size, searchBudget)
	}
}

// TestReplyFitsMinimumMessage: with the largest search list the budget
// lets through, a 63-byte hostname, three nameservers and a client
// identifier, the ACK still fits in the 576 bytes every client accepts.
func TestReplyFitsMinimumMessage(t *testing.T) {
	var domains []string
	for i := range 20 {
		domains = append(domains, strings.Repeat(string(rune('a'+i)), 10)+".example.com")
	}
	rc, err := ParseResolvConf(strings.NewReader("search " + strings.Join(domains, " ")))
	if err != nil {
		t.Fatal(err)
	}
	if len(rc.Warnings) == 0 {
		t.Fatal("the test's search list fits the budget: make it longer")
	}
	cfg := testConfig()
	cfg.Search, cfg.DomainName = rc.Search, LongestDomain(rc.Search)
	cfg.Hostname = strings.Repeat("h", 63)
	cfg.DNS = addrs("10.96.0.10", "10.96.0.11", "10.96.0.12")
	clientID := make([]byte, 19)
	req := request(t, guestMAC, cfg.GuestIP, netip.Addr{}, netip.Addr{})
	req.Options[61] = clientID
	ack := newTestServer(t, cfg).Reply(req)
	if n := len(ack.ToBytes()) + 28; n > 576 {
		t.Errorf("ACK is %d bytes with IP and UDP headers, more than 576", n)
	}
}

func TestReadResolvConfErrors(t *testing.T) {
	_, err := ReadResolvConf(filepath.Join(t.TempDir(), "missing.conf"))
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "missing.conf") {
		t.Errorf("missing file: got %v, want a not-exist error naming the path", err)
	}
	boom := errors.New("boom")
	if _, err := ParseResolvConf(iotest.ErrReader(boom)); !errors.Is(err, boom) {
		t.Errorf("failing reader: got %v, want %v", err, boom)
	}
}
