package ports

import (
	"slices"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		spec string
		want string // canonical String() of the result
		len  int
	}{
		{"80", "80/tcp", 1},
		{"80/tcp", "80/tcp", 1},
		{"53/udp", "53/udp", 1},
		{"53/UDP", "53/udp", 1},
		{"5353/tcp+udp", "5353/tcp,5353/udp", 2},
		{"5353/Udp+TCP", "5353/tcp,5353/udp", 2},
		{"1", "1/tcp", 1},
		{"65535", "65535/tcp", 1},
		{"0080", "80/tcp", 1},
		{"8000-8100", "8000-8100/tcp", 101},
		{"8000-8000", "8000/tcp", 1},
		{"80,443/tcp,53/udp,8000-8100,5353/tcp+udp",
			"80/tcp,443/tcp,5353/tcp,8000-8100/tcp,53/udp,5353/udp", 106},
		{" 80 ,\t443 ", "80/tcp,443/tcp", 2},
		{"81,80,82", "80-82/tcp", 3},            // adjacent ports merge
		{"80,80/tcp,70-90,85", "70-90/tcp", 21}, // overlaps are fine
		{"1-49151,49154-65535", "1-49151/tcp,49154-65535/tcp", 65533},
		{"49151,49154", "49151/tcp,49154/tcp", 2}, // neighbours of the reserved ports
		{"1-49151/tcp+udp", "1-49151/tcp,1-49151/udp", 2 * 49151},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			got, err := Parse(tt.spec)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.spec, err)
			}
			if s := got.String(); s != tt.want {
				t.Errorf("Parse(%q) = %q, want %q", tt.spec, s, tt.want)
			}
			if got.Len() != tt.len {
				t.Errorf("Parse(%q).Len() = %d, want %d", tt.spec, got.Len(), tt.len)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		spec string
		want []string // substrings the error must hold
	}{
		{"", []string{"empty port list", "every port"}},
		{"  ", []string{"empty port list"}},
		{"80,,81", []string{`""`, "empty item", "PORT or FIRST-LAST"}},
		{"80,", []string{`""`, "empty item"}},
		{",80", []string{`""`, "empty item"}},
		{"80, ,81", []string{`" "`, "empty item"}},
		{"0", []string{`"0"`, "1 to 65535"}},
		{"0-10", []string{`"0-10"`, "1 to 65535"}},
		{"65536", []string{`"65536"`, "out of range", "1 to 65535"}},
		{"99999999999999999999999", []string{"out of range"}},
		{"1-70000", []string{`"1-70000"`, "70000 out of range"}},
		{"http", []string{`"http"`, "not a port number", "PORT or FIRST-LAST"}},
		{"-80", []string{`"-80"`, "not a port number"}},
		{"+80", []string{`"+80"`, "not a port number"}},
		{"80-", []string{`"80-"`, "not a port number"}},
		{"80-90-100", []string{`"80-90-100"`, "not a port number"}},
		{"8 0", []string{`"8 0"`, "not a port number"}},
		{"80 /tcp", []string{`"80 /tcp"`, "not a port number"}},
		{"0x50", []string{`"0x50"`, "not a port number"}},
		{"8100-8000", []string{`"8100-8000"`, "reversed", "8000-8100"}},
		{"80/sctp", []string{`"80/sctp"`, `unknown protocol "sctp"`, "tcp, udp or tcp+udp"}},
		{"80/", []string{`"80/"`, `unknown protocol ""`}},
		{"80/tcp/udp", []string{`unknown protocol "tcp/udp"`}},
		{"80/tcp+tcp", []string{`unknown protocol "tcp+tcp"`}},
		{"49152", []string{`"49152"`, "libvirt's migration", "never forwarded"}},
		{"49153/udp", []string{`"49153/udp"`, "libvirt's migration"}},
		{"49000-50000", []string{`"49000-50000"`, "libvirt's migration", "49000-49151,49154-50000"}},
		{"49152-49153", []string{"libvirt's migration"}},
		{"49153-49160", []string{"libvirt's migration", "leave them out: 49154-49160"}},
		{"1-65535", []string{"libvirt's migration", "1-49151,49154-65535"}},
		{"80,443,x", []string{`"x"`}}, // the bad item, not the first
		{";rm -rf", []string{`";rm -rf"`}},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			got, err := Parse(tt.spec)
			if err == nil {
				t.Fatalf("Parse(%q) = %v, want an error", tt.spec, got)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Parse(%q) error %q does not say %q", tt.spec, err, w)
				}
			}
			if got.Len() != 0 {
				t.Errorf("Parse(%q) failed but returned %d ports", tt.spec, got.Len())
			}
		})
	}
}

func TestSetContains(t *testing.T) {
	s, err := Parse("80,53/udp,8000-8100/tcp+udp,65535/udp")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		proto Protocol
		port  uint16
		want  bool
	}{
		{TCP, 80, true},
		{UDP, 80, false},
		{TCP, 79, false},
		{TCP, 81, false},
		{UDP, 53, true},
		{TCP, 53, false},
		{TCP, 8000, true},
		{UDP, 8050, true},
		{UDP, 8100, true},
		{TCP, 8101, false},
		{TCP, 7999, false},
		{UDP, 65535, true},
		{TCP, 65535, false},
		{TCP, 0, false},
		{Protocol(0), 80, false},
		{Protocol(3), 80, false},
		{Protocol(255), 53, false},
	}
	for _, tt := range tests {
		if got := s.Contains(tt.proto, tt.port); got != tt.want {
			t.Errorf("Contains(%v, %d) = %v, want %v", tt.proto, tt.port, got, tt.want)
		}
	}
}

func TestSetZero(t *testing.T) {
	var s Set
	if s.Contains(TCP, 80) || s.Len() != 0 || s.String() != "" || s.Ranges() != nil {
		t.Errorf("zero Set is not empty: %q, len %d", s, s.Len())
	}
	for proto, port := range s.All() {
		t.Errorf("zero Set yields %v %d", proto, port)
	}
}

func TestSetAll(t *testing.T) {
	s, err := Parse("443, 80, 63-65, 53/udp, 1/udp")
	if err != nil {
		t.Fatal(err)
	}
	type pair struct {
		proto Protocol
		port  uint16
	}
	var got []pair
	for proto, port := range s.All() {
		got = append(got, pair{proto, port})
	}
	want := []pair{{TCP, 63}, {TCP, 64}, {TCP, 65}, {TCP, 80}, {TCP, 443}, {UDP, 1}, {UDP, 53}}
	if !slices.Equal(got, want) {
		t.Errorf("All() = %v, want %v", got, want)
	}
	// Stopping early stops the iteration.
	n := 0
	for range s.All() {
		n++
		if n == 2 {
			break
		}
	}
	if n != 2 {
		t.Errorf("break after 2 saw %d pairs", n)
	}
}

func TestSetRanges(t *testing.T) {
	s, err := Parse("1-10,12,11/udp,63,64,65535,65535/udp")
	if err != nil {
		t.Fatal(err)
	}
	want := []Range{
		{TCP, 1, 10}, {TCP, 12, 12}, {TCP, 63, 64}, {TCP, 65535, 65535},
		{UDP, 11, 11}, {UDP, 65535, 65535},
	}
	if got := s.Ranges(); !slices.Equal(got, want) {
		t.Errorf("Ranges() = %v, want %v", got, want)
	}
}

func TestNew(t *testing.T) {
	got, err := New(Range{TCP, 1, 1023}, Range{UDP, 53, 53}, Range{TCP, 80, 80})
	if err != nil {
		t.Fatal(err)
	}
	if s := got.String(); s != "1-1023/tcp,53/udp" {
		t.Errorf("New = %q", s)
	}
	if got, err := New(); err != nil || got.Len() != 0 {
		t.Errorf("New() = %v, %v; want the empty set", got, err)
	}
	bad := []struct {
		r    Range
		want string
	}{
		{Range{TCP, 0, 10}, "port 0"},
		{Range{TCP, 10, 0}, "port 0"},
		{Range{UDP, 20, 10}, "reversed"},
		{Range{Protocol(0), 80, 80}, "unknown protocol"},
		{Range{Protocol(7), 80, 80}, "unknown protocol"},
		{Range{TCP, 40000, 50000}, "libvirt's migration"},
		{Range{UDP, 49153, 49153}, "libvirt's migration"},
	}
	for _, tt := range bad {
		_, err := New(Range{TCP, 80, 80}, tt.r)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New(%v) error %v, want one saying %q", tt.r, err, tt.want)
		}
	}
}

// TestAllBut checks the split around the ephemeral range and libvirt's
// ports, for both protocols (nat's TestOutsideRange, moved).
func TestAllBut(t *testing.T) {
	tests := []struct {
		first, last uint16
		want        string // the ranges of each protocol
	}{
		{32768, 60999, "1-32767,61000-65535"},
		{50000, 60999, "1-49151,49154-49999,61000-65535"},
		{32768, 49151, "1-32767,49154-65535"},
		{1024, 65535, "1-1023"},
		{1, 65535, ""},
		{49152, 49153, "1-49151,49154-65535"},
		{2, 1, "1-49151,49154-65535"}, // reversed: nothing but the reserved ports left out
	}
	for _, tt := range tests {
		var want []string
		for _, proto := range []string{"tcp", "udp"} {
			for r := range strings.SplitSeq(tt.want, ",") {
				if r != "" {
					want = append(want, r+"/"+proto)
				}
			}
		}
		if got := AllBut(tt.first, tt.last).String(); got != strings.Join(want, ",") {
			t.Errorf("AllBut(%d, %d) = %q, want %q", tt.first, tt.last, got, strings.Join(want, ","))
		}
	}
}

func TestReserved(t *testing.T) {
	for port := range 65536 {
		want := port == 0 || port == 49152 || port == 49153
		if got := Reserved(uint16(port)); got != want {
			t.Errorf("Reserved(%d) = %v, want %v", port, got, want)
		}
	}
}

func TestProtocolString(t *testing.T) {
	tests := []struct {
		p    Protocol
		want string
	}{{TCP, "tcp"}, {UDP, "udp"}, {Protocol(0), "Protocol(0)"}, {Protocol(9), "Protocol(9)"}}
	for _, tt := range tests {
		if got := tt.p.String(); got != tt.want {
			t.Errorf("Protocol(%d).String() = %q, want %q", uint8(tt.p), got, tt.want)
		}
	}
}

// FuzzParse checks that Parse never panics, never accepts a port outside
// 1..65535 or a reserved one, and that every set it returns survives a
// round trip through its canonical String.
// Seeds: testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, spec string) {
		s, err := Parse(spec)
		if err != nil {
			if s.Len() != 0 {
				t.Fatalf("Parse(%q) failed (%v) but returned %d ports", spec, err, s.Len())
			}
			return
		}
		n := 0
		for proto, port := range s.All() {
			n++
			if Reserved(port) || !proto.valid() {
				t.Fatalf("Parse(%q) holds %d/%v", spec, port, proto)
			}
			if !s.Contains(proto, port) {
				t.Fatalf("Parse(%q) yields %d/%v but does not contain it", spec, port, proto)
			}
		}
		if n != s.Len() || n == 0 {
			t.Fatalf("Parse(%q): All yields %d pairs, Len says %d", spec, n, s.Len())
		}
		again, err := Parse(s.String())
		if err != nil {
			t.Fatalf("Parse(%q).String() = %q does not parse: %v", spec, s, err)
		}
		if *again.bits != *s.bits || again.Len() != s.Len() {
			t.Fatalf("Parse(%q) = %q, which parses to %q", spec, s, again)
		}
	})
}
