package scenario

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/consentd/consentd/bench"
	"github.com/consentd/consentd/bench/plot"
)

// spectrumRate is the rate whose latency spectra are drawn (or the nearest
// measured): the one the ratio targets are judged at.
const spectrumRate = 5000

// Plots returns the plots of a run by file name: for each store and
// transport, the latency spectrum of every scenario at the rate nearest
// spectrumRate, and p99 (and p50) against offered rate, the floor drawn
// dashed in both.
func Plots(rows []bench.Row) map[string]func(io.Writer) error {
	out := map[string]func(io.Writer) error{}
	type group struct{ store, transport string }
	var groups []group
	for _, r := range rows {
		g := group{r.Store, r.Transport}
		if r.Store != "" && !slices.Contains(groups, g) && !strings.HasPrefix(r.Scenario, "direct-") {
			groups = append(groups, g)
		}
	}
	for _, g := range groups {
		in := func(r bench.Row) bool {
			return r.Store == g.store && (r.Transport == g.transport || strings.HasPrefix(r.Scenario, "direct-")) &&
				r.Result != nil && r.Result.Count > 0
		}
		rate := nearestRate(rows, in)
		var lines []plot.Line
		curves := map[string]*plot.Curve{}
		var order []string
		for _, r := range rows {
			family, at, ok := strings.Cut(r.Scenario, "@")
			if !ok || !in(r) {
				continue
			}
			family = strings.TrimSuffix(family, "-probe")
			if family == "floor-cold" {
				continue // the same floor as floor-warm, measured again next to the cold checks
			}
			name := family
			if r.Procs > 0 {
				name += " GOMAXPROCS=" + strconv.Itoa(r.Procs)
			}
			// The floors of the entitlement scenarios (floor-warm-plain,
			// -entitled) are floors too.
			floor := strings.HasPrefix(family, "floor-warm") && r.Procs == 0
			if !r.Probe && at == fmt.Sprintf("%g/s", rate) {
				lines = append(lines, plot.Line{Name: name, Floor: floor, Result: r.Result})
			}
			c := curves[name]
			if c == nil {
				c = &plot.Curve{Name: name, Floor: floor}
				curves[name] = c
				order = append(order, name)
			}
			c.Results = append(c.Results, r.Result)
		}
		suffix := g.store + "-" + g.transport + ".png"
		if len(lines) > 0 {
			title := fmt.Sprintf("Check latency at %g/s, %s store, %s", rate, g.store, g.transport)
			out["spectrum-"+suffix] = func(w io.Writer) error { return plot.Spectrum(w, title, lines) }
		}
		var cs []plot.Curve
		for _, name := range order {
			if len(curves[name].Results) > 1 {
				cs = append(cs, *curves[name])
			}
		}
		if len(cs) > 0 {
			title := fmt.Sprintf("Latency vs offered rate, %s store, %s", g.store, g.transport)
			out["rate-"+suffix] = func(w io.Writer) error { return plot.VsRate(w, title, cs) }
		}
	}
	return out
}

// nearestRate is the offered rate of the rows in that is nearest
// spectrumRate.
func nearestRate(rows []bench.Row, in func(bench.Row) bool) float64 {
	best := 0.0
	for _, r := range rows {
		if in(r) && !r.Probe && strings.Contains(r.Scenario, "@") &&
			math.Abs(r.Result.Offered-spectrumRate) < math.Abs(best-spectrumRate) {
			best = r.Result.Offered
		}
	}
	return best
}
