package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// iperf3Report is the part of `iperf3 -J` output that the tables use.
type iperf3Report struct {
	Error string `json:"error"`
	End   struct {
		SumSent     iperf3Sum `json:"sum_sent"`
		SumReceived iperf3Sum `json:"sum_received"`
		Sum         iperf3Sum `json:"sum"` // UDP: loss (and packets) as the server saw it
	} `json:"end"`
}

type iperf3Sum struct {
	BitsPerSecond float64 `json:"bits_per_second"`
	Retransmits   float64 `json:"retransmits"`
	LostPercent   float64 `json:"lost_percent"`
	Packets       float64 `json:"packets"`
	LostPackets   float64 `json:"lost_packets"`
	Seconds       float64 `json:"seconds"`
}

// parseRaw fills r.Value (and Retr, Loss, Conns) from r's raw output file,
// for the runs run.sh left to parse; one whose output shows a failure
// becomes "fail".
func parseRaw(dir string, r *run) {
	if r.Status != "ok" || r.File == "" {
		return
	}
	b, err := os.ReadFile(filepath.Join(dir, r.File))
	if err == nil {
		err = parseInto(r, b)
	}
	if err != nil {
		r.Status = "fail"
		r.Error = strings.TrimSpace(strings.Join([]string{r.Error, err.Error()}, " "))
	}
}

func parseInto(r *run, b []byte) error {
	switch {
	case r.Test == "udp_64", r.Test == "udp_in_64":
		var rep iperf3Report
		if err := json.Unmarshal(b, &rep); err != nil {
			return fmt.Errorf("iperf3 output: %w", err)
		}
		if rep.Error != "" {
			return fmt.Errorf("iperf3: %s", rep.Error)
		}
		s := rep.End.Sum
		if s.Seconds <= 0 || s.Packets <= s.LostPackets {
			return fmt.Errorf("iperf3 measured nothing")
		}
		r.Value = ptr((s.Packets - s.LostPackets) / s.Seconds)
		r.Loss = &s.LostPercent
	case strings.HasPrefix(r.Test, "tcp_"), r.Test == "udp_out", r.Test == "udp_in", r.Test == "udp_out_max", r.Test == "udp_in_max":
		var rep iperf3Report
		if err := json.Unmarshal(b, &rep); err != nil {
			return fmt.Errorf("iperf3 output: %w", err)
		}
		if rep.Error != "" {
			return fmt.Errorf("iperf3: %s", rep.Error)
		}
		v := rep.End.SumReceived.BitsPerSecond
		if strings.HasPrefix(r.Test, "udp_") {
			// Received, whichever way this iperf3 version counts it.
			loss := rep.End.Sum.LostPercent
			v = math.Min(v, rep.End.SumSent.BitsPerSecond*(1-loss/100))
			r.Loss = &loss
		} else {
			r.Retr = &rep.End.SumSent.Retransmits
		}
		if v <= 0 {
			return fmt.Errorf("iperf3 measured nothing")
		}
		r.Value = ptr(v / 1e9)
	case r.Test == "rr" || r.Test == "rr_load" || r.Test == "crr" || r.Test == "crr_server":
		var out struct {
			Rate       float64  `json:"rate"`
			P50        *float64 `json:"p50_us"`
			P99        *float64 `json:"p99_us"`
			FirstError string   `json:"first_error"`
		}
		if err := json.Unmarshal(b, &out); err != nil {
			return fmt.Errorf("tcprr output: %w", err)
		}
		if out.Rate <= 0 {
			return fmt.Errorf("no transaction: %s", out.FirstError)
		}
		r.Value, r.P50, r.P99 = &out.Rate, out.P50, out.P99
		if r.Test == "rr_load" { // its row is the p99 latency
			if out.P99 == nil {
				return fmt.Errorf("tcprr output has no p99_us")
			}
			r.Value = out.P99
		}
	case r.Test == "rss_conns":
		var out struct {
			Opened     float64 `json:"opened"`
			FirstError string  `json:"first_error"`
		}
		if err := json.Unmarshal(b, &out); err != nil {
			return fmt.Errorf("idleconns output: %w", err)
		}
		if out.Opened == 0 {
			return fmt.Errorf("no connection opened: %s", out.FirstError)
		}
		r.Conns = &out.Opened
	default:
		return fmt.Errorf("no parser for test %q", r.Test)
	}
	return nil
}

// derive makes the rows computed from others: udp_loss from each udp_out
// run, and conn_kib from each rss_conns run (against the RSS just before the
// connections opened).
func derive(runs []run) []run {
	var out []run
	for _, r := range runs {
		switch r.Test {
		case "udp_out", "udp_in":
			id := map[string]string{"udp_out": "udp_loss", "udp_in": "udp_in_loss"}[r.Test]
			d := run{Impl: r.Impl, MTU: r.MTU, Test: id, Run: r.Run, Status: r.Status, Error: r.Error}
			if r.Status == "ok" {
				d.Value = r.Loss
			}
			out = append(out, d)
		case "rr":
			for _, p := range []struct {
				id string
				v  *float64
			}{{"rr_p50", r.P50}, {"rr_p99", r.P99}} {
				id, v := p.id, p.v
				d := run{Impl: r.Impl, MTU: r.MTU, Test: id, Run: r.Run, Status: r.Status, Error: r.Error}
				if r.Status == "ok" {
					if d.Value = v; v == nil {
						d.Status, d.Error = "fail", "tcprr output has no latency percentiles"
					}
				}
				out = append(out, d)
			}
		case "rss_conns":
			d := run{Impl: r.Impl, MTU: r.MTU, Test: "conn_kib", Run: r.Run, Status: r.Status, Error: r.Error}
			if r.Status == "ok" && r.Value != nil && r.Base != nil && r.Conns != nil {
				d.Value = ptr((*r.Value - *r.Base) * 1024 / *r.Conns)
			} else if d.Status == "ok" {
				d.Status = "fail"
			}
			out = append(out, d)
		}
	}
	return out
}

// summary is the median of one row's cell over its ok runs.
type summary struct {
	MTU    int      `json:"mtu"`
	Test   string   `json:"test"`
	Impl   string   `json:"impl"`
	Median *float64 `json:"median"`
	CPU    *float64 `json:"cpu_s_median,omitempty"`
	RSS    *float64 `json:"peak_rss_kib_median,omitempty"`
	Runs   int      `json:"runs_ok"`
	Error  string   `json:"error,omitempty"` // the first failed run's
}

func summarize(runs []run) []summary {
	type key struct {
		mtu        int
		test, impl string
	}
	var order []key
	cells := map[key][]run{}
	for _, r := range runs {
		k := key{r.MTU, r.Test, r.Impl}
		if _, ok := cells[k]; !ok {
			order = append(order, k)
		}
		cells[k] = append(cells[k], r)
	}
	var out []summary
	for _, k := range order {
		s := summary{MTU: k.mtu, Test: k.test, Impl: k.impl}
		var vals, cpus, rsss []float64
		for _, r := range cells[k] {
			if r.Status != "ok" || r.Value == nil {
				if s.Error == "" {
					s.Error = r.Error
				}
				continue
			}
			s.Runs++
			vals = append(vals, *r.Value)
			if r.CPU != nil {
				cpus = append(cpus, *r.CPU)
			}
			if r.RSS != nil {
				rsss = append(rsss, *r.RSS)
			}
		}
		s.Median, s.CPU, s.RSS = median(vals), median(cpus), median(rsss)
		out = append(out, s)
	}
	return out
}

func median(v []float64) *float64 {
	if len(v) == 0 {
		return nil
	}
	v = slices.Clone(v)
	slices.Sort(v)
	m := v[len(v)/2]
	if len(v)%2 == 0 {
		m = (v[len(v)/2-1] + m) / 2
	}
	return &m
}

func ptr(v float64) *float64 { return &v }
