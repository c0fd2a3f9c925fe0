package main

// unit of a measurement, with how to print it.
type unit struct {
	Name         string // as printed after the row title
	HigherBetter bool   // for "best peer": the highest value, else the lowest
}

var (
	gbps    = unit{"Gbit/s", true}
	perSec  = unit{"/s", true}
	percent = unit{"%", false}
	seconds = unit{"s", false}
	mib     = unit{"MiB", false}
	micros  = unit{"µs", false}
	kib     = unit{"KiB", false}
)

// test is one row of the tables.
type test struct {
	ID         string // as run.sh names it in runs.jsonl
	Title      string
	Unit       unit
	Throughput bool // drawn in the chart
}

// tests lists the rows in the order they are printed. udp_loss,
// udp_in_loss, rr_p50, rr_p99 and conn_kib are derived: from udp_out's and
// udp_in's iperf3 reports, from rr's latencies, and from rss_conns and
// rss_idle.
var tests = []test{
	{"tcp_out_1", "TCP guest→out, 1 stream", gbps, true},
	{"tcp_out_4", "TCP guest→out, 4 streams", gbps, true},
	{"tcp_in_1", "TCP out→guest, 1 stream", gbps, true},
	{"tcp_in_4", "TCP out→guest, 4 streams", gbps, true},
	{"udp_out", "UDP guest→out, received", gbps, true},
	{"udp_loss", "UDP guest→out, loss", percent, false},
	{"udp_in", "UDP out→guest, received", gbps, true},
	{"udp_in_loss", "UDP out→guest, loss", percent, false},
	{"udp_out_max", "UDP guest→out, unlimited offered, received", gbps, true},
	{"udp_in_max", "UDP out→guest, unlimited offered, received", gbps, true},
	{"udp_64", "UDP guest→out, 64-byte datagrams received", perSec, false},
	{"udp_in_64", "UDP out→guest, 64-byte datagrams received", perSec, false},
	{"rr", "TCP RR, transactions", perSec, false},
	{"rr_p50", "TCP RR, p50 latency", micros, false},
	{"rr_p99", "TCP RR, p99 latency", micros, false},
	{"rr_load", "TCP RR p99 beside a bulk stream", micros, false},
	{"crr", "TCP CRR, connections", perSec, false},
	{"crr_server", "TCP CRR, server closes", perSec, false},
	{"rss_idle", "RSS, idle after setup", mib, false},
	{"rss_conns", "RSS, idle TCP conns open", mib, false},
	{"conn_kib", "RSS per idle TCP conn", kib, false},
	{"lease", "start → guest's DHCP lease", seconds, false},
}

// costTests are the rows whose runs carry the implementation's CPU time and
// peak RSS.
var costTests = []string{"tcp_out_1", "tcp_out_4", "tcp_in_1", "tcp_in_4", "udp_out", "udp_in", "udp_out_max", "udp_in_max", "udp_64", "udp_in_64", "rr", "rr_load", "crr", "crr_server"}

func testByID(id string) (test, bool) {
	for _, t := range tests {
		if t.ID == id {
			return t, true
		}
	}
	return test{}, false
}
