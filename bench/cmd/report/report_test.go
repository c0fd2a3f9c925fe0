package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestFormat(t *testing.T) {
	for _, c := range []struct {
		v    *float64
		u    unit
		want string
	}{
		{nil, gbps, "n/a"},
		{ptr(16.64), gbps, "16.6"},
		{ptr(0.0837), gbps, "0.0837"},
		{ptr(0.9), gbps, "0.900"},
		{ptr(2.5), gbps, "2.50"},
		{ptr(16000.4), perSec, "16,000"},
		{ptr(1234567), perSec, "1,234,567"},
		{ptr(761.18), mib, "761"},
		{ptr(0), percent, "0"},
	} {
		if got := format(c.v, c.u); got != c.want {
			t.Errorf("format(%v, %v) = %q, want %q", deref(c.v), c.u.Name, got, c.want)
		}
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{
		{[]float64{3}, 3},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		if got := median(c.in); got == nil || *got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, deref(got), c.want)
		}
	}
	if median(nil) != nil {
		t.Error("median(nil) is not nil")
	}
}

func TestNiceCeil(t *testing.T) {
	for in, want := range map[float64]float64{0: 0, 0.7: 0.8, 16.6: 20, 28.5: 30, 30.7: 40, 100: 100} {
		if got := niceCeil(in); got != want {
			t.Errorf("niceCeil(%v) = %v, want %v", in, got, want)
		}
	}
}

func TestBestPeer(t *testing.T) {
	vals := map[string]float64{"kernel": 20, "pasta": 0.1, "slirp4netns": 0.6, "masq": 3}
	val := func(impl string, _ test) *float64 { v := vals[impl]; return &v }
	impls := []string{"kernel", "pasta", "slirp4netns", "masq"}
	if got := *bestPeer(impls, val, test{Unit: gbps}); got != 0.6 {
		t.Errorf("best peer for a rate = %v, want 0.6 (the highest)", got)
	}
	if got := *bestPeer(impls, val, test{Unit: mib}); got != 0.1 {
		t.Errorf("best peer for a cost = %v, want 0.1 (the lowest)", got)
	}
}

// TestReport runs the whole report over a small run directory: raw outputs
// parsed, a failed run left out of the median, derived rows, all three files.
func TestReport(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"runs.jsonl": `{"impl":"kernel","mtu":1500,"test":"tcp_out_1","run":1,"status":"ok","file":"raw/k1.json"}
{"impl":"kernel","mtu":1500,"test":"tcp_out_1","run":2,"status":"ok","file":"raw/k2.json"}
{"impl":"masq","mtu":1500,"test":"tcp_out_1","run":1,"status":"ok","file":"raw/m1.json","cpu_s":1.5,"rss_kib":20480}
{"impl":"masq","mtu":1500,"test":"tcp_out_1","run":2,"status":"fail","error":"exit status 124 (timed out)"}
{"impl":"masq","mtu":1500,"test":"udp_out","run":1,"status":"ok","file":"raw/u.json"}
{"impl":"masq","mtu":1500,"test":"rr","run":1,"status":"ok","file":"raw/rr.json"}
{"impl":"masq","mtu":1500,"test":"rr_load","run":1,"status":"ok","file":"raw/rrl.json"}
{"impl":"masq","mtu":1500,"test":"udp_in","run":1,"status":"ok","file":"raw/ui.json"}
{"impl":"masq","mtu":1500,"test":"udp_64","run":1,"status":"ok","file":"raw/u64.json"}
{"impl":"masq","mtu":1500,"test":"udp_in_64","run":1,"status":"ok","file":"raw/ui64.json"}
{"impl":"masq","mtu":1500,"test":"udp_out_max","run":1,"status":"ok","file":"raw/umax.json"}
{"impl":"masq","mtu":1500,"test":"udp_in_max","run":1,"status":"ok","file":"raw/uimax.json"}
{"impl":"masq","mtu":1500,"test":"rss_conns","run":1,"status":"ok","file":"raw/idle.json","value":40,"base_mib":20}
{"impl":"masq","mtu":1500,"test":"lease","run":1,"status":"ok","value":0.2}
`,
		"raw/k1.json":    `{"end":{"sum_sent":{"bits_per_second":2e10,"retransmits":0},"sum_received":{"bits_per_second":1.6e10}}}`,
		"raw/k2.json":    `{"end":{"sum_sent":{"bits_per_second":2e10,"retransmits":0},"sum_received":{"bits_per_second":1.8e10}}}`,
		"raw/m1.json":    `{"end":{"sum_sent":{"bits_per_second":9e9,"retransmits":2},"sum_received":{"bits_per_second":8.5e9}}}`,
		"raw/u.json":     `{"end":{"sum":{"lost_percent":10},"sum_sent":{"bits_per_second":1e9},"sum_received":{"bits_per_second":1e9}}}`,
		"raw/rr.json":    `{"mode":"rr","rate":12345.6,"p50_us":80.5,"p99_us":150.25}`,
		"raw/rrl.json":   `{"mode":"rr","rate":2000,"p50_us":300,"p99_us":1234}`,
		"raw/ui.json":    `{"end":{"sum":{"lost_percent":20},"sum_sent":{"bits_per_second":1e9},"sum_received":{"bits_per_second":1e9}}}`,
		"raw/u64.json":   `{"end":{"sum":{"packets":300000,"lost_packets":100000,"seconds":2,"lost_percent":33.3}}}`,
		"raw/ui64.json":  `{"end":{"sum":{"packets":500000,"lost_packets":100000,"seconds":2,"lost_percent":20}}}`,
		"raw/umax.json":  `{"end":{"sum":{"lost_percent":50},"sum_sent":{"bits_per_second":4e9},"sum_received":{"bits_per_second":4e9}}}`,
		"raw/uimax.json": `{"end":{"sum":{"lost_percent":25},"sum_sent":{"bits_per_second":2e9},"sum_received":{"bits_per_second":2e9}}}`,
		"raw/idle.json":  `{"opened":10240}`,
	}
	for name, content := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := report(dir); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "tables.txt"))
	if err != nil {
		t.Fatal(err)
	}
	tables := strings.Join(strings.Fields(string(b)), " ")
	for _, want := range []string{
		"TCP guest→out, 1 stream (Gbit/s) 17.0 8.50 0.50×", // median of 16 and 18; one masq run failed
		"UDP guest→out, received (Gbit/s) n/a 0.900",       // 10 % of 1 Gbit/s lost
		"TCP RR, transactions (/s) n/a 12,346",
		"TCP RR, p50 latency (µs) n/a 80.5",
		"TCP RR, p99 latency (µs) n/a 150",
		"TCP RR p99 beside a bulk stream (µs) n/a 1234",
		"UDP out→guest, received (Gbit/s) n/a 0.800",
		"UDP out→guest, loss (%) n/a 20.0",
		"UDP guest→out, 64-byte datagrams received (/s) n/a 100,000",
		"UDP out→guest, 64-byte datagrams received (/s) n/a 200,000",
		"UDP guest→out, unlimited offered, received (Gbit/s) n/a 2.00", // half of 4 Gbit/s lost
		"UDP out→guest, unlimited offered, received (Gbit/s) n/a 1.50",
		"RSS per idle TCP conn (KiB) n/a 2.00", // (40-20) MiB / 10240
		"start → guest's DHCP lease (s) n/a 0.200",
	} {
		if !strings.Contains(tables, want) {
			t.Errorf("tables lack %q:\n%s", want, tables)
		}
	}
	for _, f := range []string{"results.json", "chart.png"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
}

func deref(v *float64) any {
	if v == nil {
		return nil
	}
	return *v
}

func TestWrap(t *testing.T) {
	tests := []struct {
		title string
		width int
		want  []string
	}{
		{"TCP guest->out, 1 stream", 30, []string{"TCP guest->out, 1 stream"}},
		{"TCP guest->out, 1 stream", 18, []string{"TCP guest->out,", "1 stream"}},
		{"UDP guest->out, unlimited offered, received", 19, []string{"UDP guest->out,", "unlimited offered,", "received"}},
		{"no commas at all here", 5, []string{"no commas at all here"}},
	}
	for _, tt := range tests {
		if got := wrap(tt.title, tt.width); !slices.Equal(got, tt.want) {
			t.Errorf("wrap(%q, %d) = %q, want %q", tt.title, tt.width, got, tt.want)
		}
	}
}
