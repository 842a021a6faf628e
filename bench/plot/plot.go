// Package plot draws benchmark results as PNG images: where a scenario's tail
// departs from the baseline's, and how its tail grows with load. Tables give
// the numbers; these show the shapes a table hides.
package plot

import (
	"cmp"
	"errors"
	"fmt"
	"image/color"
	"io"
	"math"
	"slices"
	"strconv"
	"time"

	gplot "gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/consentd/consentd/bench"
)

// Every plot is 800×500 pixels, wide enough to read a legend of several
// scenarios beside the lines; 96 dpi (gonum's default, pinned here) gives
// 10-point labels 13 pixels high.
const (
	widthPx, heightPx = 800, 500
	dpi               = 96
)

// Line is one scenario's latency distribution in a spectrum plot.
type Line struct {
	Name   string
	Floor  bool // the baseline: drawn dashed and dark so every other line reads against it
	Result *bench.Result
}

// Spectrum writes a PNG of each line's latency at every percentile, the
// percentiles spread as nines (50, 90, 99, 99.9, 99.99 evenly apart) so the
// tail, where scenarios differ, gets most of the width.
func Spectrum(w io.Writer, title string, lines []Line) error {
	if len(lines) == 0 {
		return errors.New("plot: Spectrum needs at least one line")
	}
	for i, l := range lines {
		if err := usable(l.Result); err != nil {
			return fmt.Errorf("plot: line %d (%q) %v", i, l.Name, err)
		}
	}
	p := newPlot(title, "percentile")
	p.X.Min, p.X.Max = 0, nines(99.99)
	p.X.Tick.Marker = ninesTicks()

	xs, ps := spectrumSamples()
	colour := 0
	for _, l := range lines {
		lat := l.Result.Percentiles(ps)
		xys := make(plotter.XYs, len(ps))
		for i := range ps {
			xys[i] = plotter.XY{X: xs[i], Y: micros(lat[i])}
		}
		line, err := plotter.NewLine(xys)
		if err != nil {
			return fmt.Errorf("plot: line %q: %w", l.Name, err)
		}
		line.LineStyle = lineStyle(l.Floor, colour)
		if !l.Floor {
			colour++
		}
		p.Add(line)
		p.Legend.Add(l.Name, line)
	}
	return render(w, p)
}

// Curve is one scenario measured at several offered rates.
type Curve struct {
	Name    string
	Floor   bool
	Results []*bench.Result // one per offered rate, any order; x is Result.Offered
}

// VsRate writes a PNG of each curve's p99 (solid, with a marker per
// measured rate) and p50 (dotted) against the offered rate: the knee where a
// scenario stops keeping up shows as the p99 leaving its p50 behind.
func VsRate(w io.Writer, title string, curves []Curve) error {
	if len(curves) == 0 {
		return errors.New("plot: VsRate needs at least one curve")
	}
	for i, c := range curves {
		if len(c.Results) == 0 {
			return fmt.Errorf("plot: curve %d (%q) has no results", i, c.Name)
		}
		for j, r := range c.Results {
			if err := usable(r); err != nil {
				return fmt.Errorf("plot: curve %d (%q) result %d %v", i, c.Name, j, err)
			}
		}
	}
	p := newPlot(title, "offered rate (requests/s)")
	p.Y.Label.Text = "p99 latency (log scale)"
	dotted := []vg.Length{vg.Points(1), vg.Points(2)}

	colour := 0
	for _, c := range curves {
		rs := slices.Clone(c.Results) // the caller's order is theirs
		slices.SortStableFunc(rs, func(a, b *bench.Result) int { return cmp.Compare(a.Offered, b.Offered) })
		p99 := make(plotter.XYs, len(rs))
		p50 := make(plotter.XYs, len(rs))
		for i, r := range rs {
			p99[i] = plotter.XY{X: r.Offered, Y: micros(r.P99())}
			p50[i] = plotter.XY{X: r.Offered, Y: micros(r.P50())}
		}
		style := lineStyle(c.Floor, colour)
		if !c.Floor {
			colour++
		}
		tail, points, err := plotter.NewLinePoints(p99)
		if err != nil {
			return fmt.Errorf("plot: curve %q: %w", c.Name, err)
		}
		tail.LineStyle = style
		points.GlyphStyle = draw.GlyphStyle{Color: style.Color, Radius: vg.Points(2.5), Shape: draw.CircleGlyph{}}
		median, err := plotter.NewLine(p50)
		if err != nil {
			return fmt.Errorf("plot: curve %q: %w", c.Name, err)
		}
		median.LineStyle = draw.LineStyle{Color: style.Color, Width: style.Width / 2, Dashes: dotted}
		p.Add(median, tail, points)
		p.Legend.Add(c.Name, tail, points)
	}
	// The axis names only the p99; a key says what the dotted lines are.
	key := &plotter.Line{LineStyle: draw.LineStyle{Color: color.Gray{Y: 0x66}, Width: vg.Points(1), Dashes: dotted}}
	p.Legend.Add("p50 of each", key)
	p.X.Min = min(p.X.Min, 0) // from zero, so the rates' spacing reads as their ratios
	return render(w, p)
}

// usable says why r cannot be plotted, completing "line 2 ("name") ...".
func usable(r *bench.Result) error {
	switch {
	case r == nil:
		return errors.New("has a nil Result")
	case r.Count == 0:
		return errors.New("has an empty Result (Count 0): there is no distribution to draw")
	}
	return nil
}

func newPlot(title, xLabel string) *gplot.Plot {
	p := gplot.New()
	p.Title.Text = title
	p.X.Label.Text = xLabel
	p.Y.Label.Text = "latency (log scale)"
	p.Legend.Top, p.Legend.Left = true, true // latency rises to the right, so the top left is the emptiest corner
	p.Add(plotter.NewGrid())
	return p
}

// render fixes the latency axis, which can only be done once every line is
// in, and writes p as a PNG.
func render(w io.Writer, p *gplot.Plot) error {
	p.Y.Scale = gplot.LogScale{}
	p.Y.Tick.Marker = gplot.TickerFunc(latencyTicks)
	p.Y.Min, p.Y.Max = decades(p.Y.Min, p.Y.Max)

	size := func(px int) vg.Length { return vg.Length(px) * vg.Inch / dpi }
	c := vgimg.PngCanvas{Canvas: vgimg.NewWith(vgimg.UseWH(size(widthPx), size(heightPx)), vgimg.UseDPI(dpi))}
	p.Draw(draw.New(c))
	if _, err := c.WriteTo(w); err != nil {
		return fmt.Errorf("plot: writing PNG: %w", err)
	}
	return nil
}

// decades widens [lo, hi] (both at least 1) to whole decades, so the log axis
// starts and ends on a labelled tick, and to at least one decade: gonum would
// widen an empty range by ±1, which reaches zero, where a log axis panics.
func decades(lo, hi float64) (float64, float64) {
	lo = math.Pow(10, math.Floor(math.Log10(lo)))
	hi = math.Pow(10, math.Ceil(math.Log10(hi)))
	if hi <= lo {
		hi = lo * 10
	}
	return lo, hi
}

// latencyTicks marks each decade of microseconds with its unit ("10ms"), so
// a reader need not count zeros.
func latencyTicks(lo, hi float64) []gplot.Tick {
	ticks := gplot.LogTicks{}.Ticks(lo, hi)
	for i, t := range ticks {
		if t.IsMinor() {
			continue
		}
		switch {
		case t.Value >= 1e6:
			ticks[i].Label = strconv.FormatFloat(t.Value/1e6, 'f', -1, 64) + "s"
		case t.Value >= 1e3:
			ticks[i].Label = strconv.FormatFloat(t.Value/1e3, 'f', -1, 64) + "ms"
		default:
			ticks[i].Label = strconv.FormatFloat(t.Value, 'f', -1, 64) + "µs"
		}
	}
	return ticks
}

// micros puts d on the latency axis: in microseconds and at least 1, as a log
// axis cannot take 0 and the histogram resolves nothing below 1 µs anyway.
func micros(d time.Duration) float64 {
	return max(float64(d)/float64(time.Microsecond), 1)
}

// nines is where percentile p (in [0, 100)) sits on the spectrum's x axis:
// its count of nines, so 90 is 1, 99 is 2 and 99.9 is 3.
func nines(p float64) float64 {
	return -math.Log10(1 - p/100)
}

func ninesTicks() gplot.ConstantTicks {
	var ticks gplot.ConstantTicks
	for _, p := range []float64{50, 90, 99, 99.9, 99.99} {
		ticks = append(ticks, gplot.Tick{Value: nines(p), Label: strconv.FormatFloat(p, 'f', -1, 64)})
	}
	return ticks
}

// spectrumSamples gives the percentiles a spectrum line passes through, evenly
// spaced in nines (25 to a nine) from 0 to 99.99, with their x positions.
func spectrumSamples() (xs, ps []float64) {
	const perNine, top = 25, 4
	for i := range perNine*top + 1 {
		x := float64(i) / perNine
		xs = append(xs, x)
		ps = append(ps, min(100*(1-math.Pow(10, -x)), 100))
	}
	return xs, ps
}

// lineStyle draws the floor dashed in near-black and every other line solid
// in the palette colour of its position among the non-floor lines, so a
// scenario keeps its colour across plots that list the same scenarios in the
// same order, with or without a floor.
func lineStyle(floor bool, i int) draw.LineStyle {
	if floor {
		return draw.LineStyle{
			Color:  color.RGBA{R: 0x22, G: 0x22, B: 0x22, A: 0xff},
			Width:  vg.Points(2),
			Dashes: []vg.Length{vg.Points(6), vg.Points(3)},
		}
	}
	// Okabe and Ito's colour-blind-safe palette, less its black (the floor's)
	// and its yellow (too faint on white).
	palette := [...]color.RGBA{
		{R: 0x00, G: 0x72, B: 0xb2, A: 0xff}, // blue
		{R: 0xd5, G: 0x5e, B: 0x00, A: 0xff}, // vermillion
		{R: 0x00, G: 0x9e, B: 0x73, A: 0xff}, // bluish green
		{R: 0xcc, G: 0x79, B: 0xa7, A: 0xff}, // reddish purple
		{R: 0xe6, G: 0x9f, B: 0x00, A: 0xff}, // orange
		{R: 0x56, G: 0xb4, B: 0xe9, A: 0xff}, // sky blue
	}
	return draw.LineStyle{Color: palette[i%len(palette)], Width: vg.Points(1.5)}
}
