package main

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"os"
	"strings"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// Chart geometry, in pixels: one panel per MTU, one group of bars per
// throughput row, one bar per implementation.
const (
	chartWidth  = 1100
	panelHeight = 330
	marginLeft  = 60
	marginRight = 20
	titleHeight = 50
	labelHeight = 46 // under each panel: the row names, up to three lines
	lineHeight  = 13 // basicfont.Face7x13
)

var (
	white = color.RGBA{0xff, 0xff, 0xff, 0xff}
	black = color.RGBA{0x20, 0x20, 0x20, 0xff}
	grid  = color.RGBA{0xdd, 0xdd, 0xdd, 0xff}
	// implColors: one colour per implementation, masq's the strong one.
	implColors = map[string]color.RGBA{
		"kernel":      {0x80, 0x80, 0x80, 0xff},
		"pasta":       {0xe6, 0x9f, 0x00, 0xff},
		"slirp4netns": {0x56, 0xb4, 0xe9, 0xff},
		subject:       {0xc0, 0x10, 0x30, 0xff},
	}
	// palette colours any other implementation, by its position.
	palette = []color.RGBA{
		{0x00, 0x9e, 0x73, 0xff},
		{0xcc, 0x79, 0xa7, 0xff},
		{0x00, 0x72, 0xb2, 0xff},
	}
)

// writeChart draws the throughput rows' medians as grouped bars.
func writeChart(path string, res results) error {
	rows := throughputRows()
	h := titleHeight + len(res.MTUs)*(panelHeight+labelHeight)
	img := image.NewRGBA(image.Rect(0, 0, chartWidth, h))
	draw.Draw(img, img.Bounds(), &image.Uniform{white}, image.Point{}, draw.Src)
	title := "masq bench: median throughput, Gbit/s (higher is better)"
	if d, ok := res.Meta["date"]; ok {
		title += fmt.Sprintf(" - %v, %v cores", d, res.Meta["nproc"])
	}
	text(img, marginLeft, 18, title, black)
	legend(img, res.Impls)
	for i, mtu := range res.MTUs {
		top := titleHeight + i*(panelHeight+labelHeight)
		panel(img, top, mtu, rows, res)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func throughputRows() []test {
	var rows []test
	for _, t := range tests {
		if t.Throughput {
			rows = append(rows, t)
		}
	}
	return rows
}

func legend(img *image.RGBA, impls []string) {
	x := marginLeft
	for i, impl := range impls {
		fill(img, image.Rect(x, 30, x+12, 42), implColor(i, impl))
		text(img, x+16, 40, impl, black)
		x += 16 + 7*len(impl) + 24
	}
}

// panel draws one MTU's groups of bars, with its own scale.
func panel(img *image.RGBA, top, mtu int, rows []test, res results) {
	medians := map[string]*float64{}
	top += 10
	peak := 0.0
	for _, s := range res.Summary {
		if s.MTU == mtu {
			medians[s.Test+"/"+s.Impl] = s.Median
			if t, ok := testByID(s.Test); ok && t.Throughput && s.Median != nil {
				peak = math.Max(peak, *s.Median)
			}
		}
	}
	scale := niceCeil(peak)
	plotH := panelHeight - 30
	bottom := top + plotH
	for i := 0; i <= 4; i++ { // Grid lines and the axis labels.
		y := bottom - i*plotH/4
		fill(img, image.Rect(marginLeft, y, chartWidth-marginRight, y+1), grid)
		text(img, 4, y+4, trimFloat(scale*float64(i)/4), black)
	}
	text(img, marginLeft, top-2, fmt.Sprintf("MTU %d", mtu), black)
	groupW := (chartWidth - marginLeft - marginRight) / len(rows)
	barW := (groupW - 20) / max(len(res.Impls), 1)
	for g, t := range rows {
		x0 := marginLeft + g*groupW + 10
		for i, impl := range res.Impls {
			x := x0 + i*barW
			v := medians[t.ID+"/"+impl]
			if v == nil || scale == 0 {
				text(img, x+2, bottom-4, "n/a", black)
				continue
			}
			y := bottom - int(math.Round(*v/scale*float64(plotH)))
			fill(img, image.Rect(x+1, y, x+barW-1, bottom), implColor(i, impl))
			text(img, x+1, y-3, format(v, t.Unit), black)
		}
		for k, line := range wrap(ascii.Replace(t.Title), (groupW-10)/7) { // 7 px per glyph
			text(img, x0, bottom+(k+1)*lineHeight+4, line, black)
		}
	}
}

// wrap breaks a row name after its commas into lines of at most width
// glyphs where it can, so neighbouring groups' names do not overlap.
func wrap(title string, width int) []string {
	var lines []string
	for _, part := range strings.SplitAfter(title, ", ") {
		if n := len(lines); n > 0 && len(lines[n-1])+len(part) <= width {
			lines[n-1] += part
			continue
		}
		lines = append(lines, part)
	}
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	return lines
}

// ascii replaces what basicfont has no glyph for.
var ascii = strings.NewReplacer("→", "->", "×", "x")

func implColor(i int, impl string) color.RGBA {
	if c, ok := implColors[impl]; ok {
		return c
	}
	return palette[i%len(palette)]
}

// niceCeil rounds v up to a round number (1, 2, 2.5, 3, 4, 5, 6 or 8 times a
// power of ten), the top of the scale.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 0
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 2.5, 3, 4, 5, 6, 8, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

func trimFloat(v float64) string { return fmt.Sprintf("%g", math.Round(v*100)/100) }

func fill(img *image.RGBA, r image.Rectangle, c color.Color) {
	draw.Draw(img, r, &image.Uniform{c}, image.Point{}, draw.Src)
}

// text draws s with its baseline at y.
func text(img *image.RGBA, x, y int, s string, c color.Color) {
	d := font.Drawer{
		Dst:  img,
		Src:  &image.Uniform{c},
		Face: basicfont.Face7x13,
		Dot:  fixed.P(x, y),
	}
	d.DrawString(s)
}
