// Command report aggregates a bench/run.sh run: it reads runs.jsonl (one
// line per measurement, pointing at the raw iperf3/tcprr/idleconns output),
// prints a table per MTU (each implementation's median, masq's ratio to
// kernel and to the best peer), and writes results.json (every run, the
// medians, the machine) and chart.png (the throughput rows).
//
//	report -dir bench/out
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// run is one measurement, as run.sh records it and as results.json keeps it.
type run struct {
	Impl   string   `json:"impl"`
	MTU    int      `json:"mtu"`
	Test   string   `json:"test"`
	Run    int      `json:"run"`
	Status string   `json:"status"`          // ok, fail or na
	File   string   `json:"file,omitempty"`  // raw output, relative to -dir
	Value  *float64 `json:"value,omitempty"` // in the test's unit
	CPU    *float64 `json:"cpu_s,omitempty"` // implementation's utime+stime
	RSS    *float64 `json:"rss_kib,omitempty"`
	Retr   *float64 `json:"retransmits,omitempty"`  // TCP tests: the sender's
	Loss   *float64 `json:"loss_percent,omitempty"` // the udp_ tests
	P50    *float64 `json:"p50_us,omitempty"`       // rr, rr_load, crr…: tcprr's latency percentiles
	P99    *float64 `json:"p99_us,omitempty"`
	Conns  *float64 `json:"conns_opened,omitempty"` // rss_conns
	Base   *float64 `json:"base_mib,omitempty"`     // rss_conns: RSS just before opening
	Error  string   `json:"error,omitempty"`
}

// results is results.json.
type results struct {
	Meta    map[string]any `json:"meta"`
	Impls   []string       `json:"impls"`
	MTUs    []int          `json:"mtus"`
	Runs    []run          `json:"runs"`
	Summary []summary      `json:"summary"`
}

func main() {
	dir := flag.String("dir", "bench/out", "run.sh's output directory")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("report: ")
	if err := report(*dir); err != nil {
		log.Fatal(err)
	}
}

func report(dir string) error {
	runs, err := readRuns(filepath.Join(dir, "runs.jsonl"))
	if err != nil {
		return err
	}
	for i := range runs {
		parseRaw(dir, &runs[i])
	}
	runs = append(runs, derive(runs)...)
	res := results{Meta: readMeta(filepath.Join(dir, "meta.json")), Runs: runs}
	res.Impls, res.MTUs = implsAndMTUs(runs)
	res.Summary = summarize(runs)

	var tables strings.Builder
	printTables(&tables, res)
	fmt.Print(tables.String())
	if err := os.WriteFile(filepath.Join(dir, "tables.txt"), []byte(tables.String()), 0o644); err != nil {
		return err
	}
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	return writeChart(filepath.Join(dir, "chart.png"), res)
}

func readRuns(path string) ([]run, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var runs []run
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var r run
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, n, err)
		}
		runs = append(runs, r)
	}
	return runs, sc.Err()
}

// readMeta returns meta.json's object, or an empty one: the machine is
// worth stating but not worth failing the report for.
func readMeta(path string) map[string]any {
	m := map[string]any{}
	if b, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(b, &m); err != nil {
			log.Printf("%s: %v", path, err)
		}
	}
	return m
}

// implsAndMTUs lists the implementations in run.sh's order (kernel first,
// masq last) and the MTUs in the order they ran.
func implsAndMTUs(runs []run) ([]string, []int) {
	var impls []string
	var mtus []int
	for _, r := range runs {
		if !slices.Contains(impls, r.Impl) {
			impls = append(impls, r.Impl)
		}
		if !slices.Contains(mtus, r.MTU) {
			mtus = append(mtus, r.MTU)
		}
	}
	return impls, mtus
}
