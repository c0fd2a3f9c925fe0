package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"unicode/utf8"
)

// The implementations the ratios are about and against; every other one is
// a peer.
const (
	subject  = "masq"
	baseline = "kernel"
)

// printTables writes, per MTU, the value table and the cost table (CPU
// seconds and peak RSS of the implementation's process, per test).
func printTables(w io.Writer, res results) {
	cell := map[string]summary{}
	for _, s := range res.Summary {
		cell[fmt.Sprint(s.MTU, s.Test, s.Impl)] = s
	}
	get := func(mtu int, test, impl string) summary { return cell[fmt.Sprint(mtu, test, impl)] }
	if m := res.Meta; len(m) > 0 {
		fmt.Fprintf(w, "%v, %v cores (%v), kernel %v; %v s per test, %v run(s); medians\n",
			m["date"], m["nproc"], m["cpu"], m["kernel"], m["duration"], m["runs"])
	}
	for _, mtu := range res.MTUs {
		table(w, fmt.Sprintf("MTU %d", mtu), res.Impls,
			func(impl string, t test) *float64 { return get(mtu, t.ID, impl).Median }, tests)
		table(w, fmt.Sprintf("MTU %d: the implementation's CPU seconds per test", mtu), res.Impls,
			func(impl string, t test) *float64 { return get(mtu, t.ID, impl).CPU }, costRows("CPU", seconds))
		table(w, fmt.Sprintf("MTU %d: the implementation's peak RSS per test", mtu), res.Impls, func(impl string, t test) *float64 {
			if v := get(mtu, t.ID, impl).RSS; v != nil {
				return ptr(*v / 1024)
			}
			return nil
		}, costRows("peak RSS", mib))
	}
}

// costRows are the cost table's rows: one per costTests entry, in unit u.
func costRows(what string, u unit) []test {
	var rows []test
	for _, id := range costTests {
		t, _ := testByID(id)
		rows = append(rows, test{ID: t.ID, Title: t.Title + ", " + what, Unit: u})
	}
	return rows
}

// table prints, under title, one row per test that has a value for some
// implementation, with masq's ratios; nothing when no row has one.
func table(w io.Writer, title string, impls []string, val func(string, test) *float64, rows []test) {
	rows = slices.DeleteFunc(slices.Clone(rows), func(t test) bool {
		return !slices.ContainsFunc(impls, func(impl string) bool { return val(impl, t) != nil })
	})
	if len(rows) == 0 {
		return
	}
	titles := make([]string, len(rows))
	width := 0
	for i, t := range rows {
		titles[i] = fmt.Sprintf("%s (%s)", t.Title, t.Unit.Name)
		width = max(width, utf8.RuneCountInString(titles[i]))
	}
	fmt.Fprintf(w, "\n%s\n", title)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%*s\t%s\t%s/%s\t%s/best peer\t\n", width, "", strings.Join(impls, "\t"), subject, baseline, subject)
	for i, t := range rows {
		cells := make([]string, 0, len(impls))
		for _, impl := range impls {
			cells = append(cells, format(val(impl, t), t.Unit))
		}
		toBase, toPeer := "-", "-" // A ratio of loss percentages says nothing.
		if t.Unit != percent {
			toBase, toPeer = ratio(val(subject, t), val(baseline, t)), ratio(val(subject, t), bestPeer(impls, val, t))
		}
		fmt.Fprintf(tw, "%-*s\t%s\t%s\t%s\t\n", width, titles[i], strings.Join(cells, "\t"), toBase, toPeer)
	}
	tw.Flush()
}

// bestPeer is the best value among the implementations that are neither
// the subject nor the baseline.
func bestPeer(impls []string, val func(string, test) *float64, t test) *float64 {
	var best *float64
	for _, impl := range impls {
		v := val(impl, t)
		if impl == subject || impl == baseline || v == nil {
			continue
		}
		if best == nil || (t.Unit.HigherBetter && *v > *best) || (!t.Unit.HigherBetter && *v < *best) {
			best = v
		}
	}
	return best
}

func ratio(a, b *float64) string {
	if a == nil || b == nil || *b == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f×", *a / *b)
}

// format prints v with three significant digits, rates with thousands
// separators.
func format(v *float64, u unit) string {
	switch {
	case v == nil:
		return "n/a"
	case u == perSec:
		return thousands(int64(math.Round(*v)))
	case *v == 0 || math.Abs(*v) >= 100:
		return fmt.Sprintf("%.0f", *v)
	case math.Abs(*v) >= 10:
		return fmt.Sprintf("%.1f", *v)
	case math.Abs(*v) >= 1:
		return fmt.Sprintf("%.2f", *v)
	default: // Three significant digits, trailing zeros kept: 0.900, 0.0837.
		return fmt.Sprintf("%.*f", 2-int(math.Floor(math.Log10(math.Abs(*v)))), *v)
	}
}

func thousands(n int64) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0 && s[i-1] != '-'; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
