// Command soakplot reads the samples of `make soak` (bench/soak.sh: a CSV
// of seconds, rss_kib, fds, threads), draws them as a PNG (one panel per
// series over the run's minutes) and judges them: each series must stay,
// over the last -flat-seconds of the run, within -tolerance of its mean
// there. It prints one line per series and exits 1 when one is not flat.
//
//	soakplot -csv soak.csv -png soak.png -flat-seconds 1200 -tolerance 0.1
package main

import (
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"math"
	"os"
	"strconv"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// series is one sampled quantity over the run.
type series struct {
	name, unit string
	scale      float64 // from the CSV's unit to the plotted one
	col        int     // the CSV column
	v          []float64
}

// verdict is how flat a series stayed over the judged window.
type verdict struct {
	mean, min, max float64
	drift          float64 // the least-squares line's change across the window
	flat           bool
	n              int
}

func main() {
	csvPath := flag.String("csv", "", "samples: seconds,rss_kib,fds,threads")
	pngPath := flag.String("png", "", "where to draw them (none: no drawing)")
	flatSeconds := flag.Float64("flat-seconds", 1200, "the judged window: the run's last seconds")
	tolerance := flag.Float64("tolerance", 0.10, "how far from its mean a sample may be in the window")
	flag.Parse()
	if *csvPath == "" {
		fail(errors.New("-csv is required"))
	}
	f, err := os.Open(*csvPath)
	if err != nil {
		fail(err)
	}
	defer f.Close()
	secs, ss, err := read(f)
	if err != nil {
		fail(fmt.Errorf("%s: %w", *csvPath, err))
	}
	ok := true
	for _, s := range ss {
		v := judge(secs, s.v, *flatSeconds, *tolerance)
		ok = ok && v.flat
		state := "flat"
		if !v.flat {
			state = "NOT flat"
		}
		fmt.Printf("%-8s last %.0f s (%d samples): mean %.1f %s, trend %+.1f%% across the window: %s within %.0f%% (spread: min %.1f, max %.1f: %+.1f%% / %+.1f%%)\n",
			s.name, *flatSeconds, v.n, v.mean*s.scale, s.unit, pct(v.mean+v.drift, v.mean), state, *tolerance*100,
			v.min*s.scale, v.max*s.scale, pct(v.min, v.mean), pct(v.max, v.mean))
	}
	if *pngPath != "" {
		if err := drawChart(*pngPath, secs, ss, *flatSeconds); err != nil {
			fail(err)
		}
	}
	if !ok {
		os.Exit(1)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "soakplot:", err)
	os.Exit(2)
}

func pct(x, mean float64) float64 {
	if mean == 0 {
		return 0
	}
	return (x - mean) / mean * 100
}

// read parses the samples.
func read(r io.Reader) ([]float64, []*series, error) {
	rows, err := csv.NewReader(r).ReadAll()
	if err != nil {
		return nil, nil, err
	}
	if len(rows) < 2 {
		return nil, nil, errors.New("no samples")
	}
	ss := []*series{
		{name: "rss", unit: "MiB", scale: 1.0 / 1024, col: 1},
		{name: "fds", unit: "", scale: 1, col: 2},
		{name: "threads", unit: "", scale: 1, col: 3},
	}
	var secs []float64
	for i, row := range rows[1:] {
		if len(row) < 4 {
			return nil, nil, fmt.Errorf("row %d: %d fields, want 4", i+2, len(row))
		}
		t, err := strconv.ParseFloat(row[0], 64)
		if err != nil {
			return nil, nil, fmt.Errorf("row %d: %w", i+2, err)
		}
		secs = append(secs, t)
		for _, s := range ss {
			x, err := strconv.ParseFloat(row[s.col], 64)
			if err != nil {
				return nil, nil, fmt.Errorf("row %d: %w", i+2, err)
			}
			s.v = append(s.v, x)
		}
	}
	return secs, ss, nil
}

// judge tells whether v had no trend beyond tol of its mean over the
// samples of the last window seconds.
func judge(secs, v []float64, window, tol float64) verdict {
	end := secs[len(secs)-1]
	out := verdict{min: math.Inf(1), max: math.Inf(-1)}
	var st, sv, stt, stv float64
	first := end
	for i, t := range secs {
		if t < end-window {
			continue
		}
		first = min(first, t)
		st, sv, stt, stv = st+t, sv+v[i], stt+t*t, stv+t*v[i]
		out.n++
		out.min, out.max = min(out.min, v[i]), max(out.max, v[i])
	}
	if out.n == 0 {
		return out
	}
	n := float64(out.n)
	out.mean = sv / n
	if d := n*stt - st*st; d > 0 {
		out.drift = (n*stv - st*sv) / d * (end - first)
	}
	out.flat = math.Abs(out.drift) <= tol*out.mean
	return out
}

// Chart geometry, in pixels.
const (
	width       = 900
	panelHeight = 220
	marginLeft  = 70
	marginRight = 20
	marginTop   = 30
	marginBelow = 30
)

var (
	white  = color.RGBA{0xff, 0xff, 0xff, 0xff}
	black  = color.RGBA{0x20, 0x20, 0x20, 0xff}
	grid   = color.RGBA{0xdd, 0xdd, 0xdd, 0xff}
	line   = color.RGBA{0xc0, 0x10, 0x30, 0xff}
	window = color.RGBA{0xf2, 0xf2, 0xf2, 0xff}
)

// drawChart draws one panel per series, the judged window shaded.
func drawChart(path string, secs []float64, ss []*series, flatSeconds float64) error {
	h := len(ss) * (panelHeight + marginTop + marginBelow)
	img := image.NewRGBA(image.Rect(0, 0, width, h))
	draw.Draw(img, img.Bounds(), &image.Uniform{white}, image.Point{}, draw.Src)
	end := secs[len(secs)-1]
	plotW := float64(width - marginLeft - marginRight)
	x := func(t float64) int { return marginLeft + int(t/math.Max(end, 1)*plotW) }
	for p, s := range ss {
		top := p*(panelHeight+marginTop+marginBelow) + marginTop
		bottom := top + panelHeight
		hi := 0.0
		for _, v := range s.v {
			hi = math.Max(hi, v*s.scale)
		}
		hi = niceCeil(hi * 1.1)
		y := func(v float64) int { return bottom - int(v*s.scale/hi*float64(panelHeight)) }
		fill(img, x(math.Max(0, end-flatSeconds)), top, x(end), bottom, window)
		for i := 0; i <= 4; i++ {
			gy := bottom - i*panelHeight/4
			fill(img, marginLeft, gy, width-marginRight, gy+1, grid)
			text(img, 4, gy+4, fmt.Sprintf("%.0f", hi*float64(i)/4))
		}
		for m := 0.0; m <= end/60; m += 5 {
			gx := x(m * 60)
			fill(img, gx, top, gx+1, bottom, grid)
			text(img, gx-6, bottom+14, fmt.Sprintf("%.0f", m))
		}
		title := s.name
		if s.unit != "" {
			title += " (" + s.unit + ")"
		}
		text(img, marginLeft, top-8, fmt.Sprintf("masq %s over %.0f minutes; shaded: the judged last %.0f", title, end/60, flatSeconds/60))
		for i := 1; i < len(secs); i++ {
			segment(img, x(secs[i-1]), y(s.v[i-1]), x(secs[i]), y(s.v[i]), line)
		}
	}
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(out, img); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

func fill(img *image.RGBA, x0, y0, x1, y1 int, c color.Color) {
	draw.Draw(img, image.Rect(x0, y0, x1, y1), &image.Uniform{c}, image.Point{}, draw.Src)
}

// segment draws a 2-pixel line from (x0, y0) to (x1, y1).
func segment(img *image.RGBA, x0, y0, x1, y1 int, c color.RGBA) {
	steps := max(abs(x1-x0), abs(y1-y0), 1)
	for i := 0; i <= steps; i++ {
		px := x0 + (x1-x0)*i/steps
		py := y0 + (y1-y0)*i/steps
		img.SetRGBA(px, py, c)
		img.SetRGBA(px, py+1, c)
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

func text(img *image.RGBA, x, y int, s string) {
	d := font.Drawer{Dst: img, Src: &image.Uniform{black}, Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
	d.DrawString(s)
}
