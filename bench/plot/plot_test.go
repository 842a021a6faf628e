package plot

import (
	"bytes"
	"image"
	"image/png"
	"io"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	gplot "gonum.org/v1/plot"

	"github.com/consentd/consentd/bench"
)

// result records n latencies spread from lo to about lo×spread at offered, with
// a long tail: the last 1% is ten times slower.
func result(offered float64, n int, lo time.Duration, spread float64) *bench.Result {
	r := &bench.Result{Offered: offered}
	for i := range n {
		d := time.Duration(float64(lo) * (1 + spread*float64(i)/float64(n)))
		if i >= n*99/100 {
			d *= 10
		}
		r.Record(d, nil)
	}
	return r
}

// constant records n latencies of d.
func constant(n int, d time.Duration) *bench.Result {
	r := &bench.Result{Offered: 100}
	for range n {
		r.Record(d, nil)
	}
	return r
}

// checkImage decodes a PNG and checks its size and that something was drawn.
func checkImage(t *testing.T, b []byte) {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("png.Decode: %v", err)
	}
	if got, want := img.Bounds(), image.Rect(0, 0, widthPx, heightPx); got != want {
		t.Errorf("image bounds = %v, want %v", got, want)
	}
	if uniform(img) {
		t.Errorf("image is a single colour")
	}
}

func uniform(img image.Image) bool {
	b := img.Bounds()
	first := img.At(b.Min.X, b.Min.Y)
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			if img.At(x, y) != first {
				return false
			}
		}
	}
	return true
}

func TestSpectrum(t *testing.T) {
	tests := []struct {
		name  string
		lines []Line
	}{
		{"floor and scenarios", []Line{
			{Name: "floor", Floor: true, Result: result(1000, 20000, 50*time.Microsecond, 1)},
			{Name: "cached", Result: result(1000, 20000, 80*time.Microsecond, 2)},
			{Name: "store", Result: result(1000, 20000, 300*time.Microsecond, 4)},
		}},
		{"one line", []Line{{Name: "only", Result: result(10, 100, time.Millisecond, 1)}}},
		{"more lines than colours", func() []Line {
			var ls []Line
			for i := range 9 {
				ls = append(ls, Line{Name: strings.Repeat("x", i+1), Result: result(10, 1000, time.Duration(i+1)*100*time.Microsecond, 1)})
			}
			return ls
		}()},
		// Zero latencies clamp to 1 µs: a flat line on a one-decade axis, not a panic.
		{"all zero latencies", []Line{{Name: "zero", Result: constant(100, 0)}}},
		{"one sample", []Line{{Name: "single", Result: constant(1, 3*time.Millisecond)}}},
		{"beyond the histogram", []Line{{Name: "slow", Result: constant(10, 2*time.Minute)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel() // rasterising is slow under -race
			var b bytes.Buffer
			if err := Spectrum(&b, "spectrum: "+tt.name, tt.lines); err != nil {
				t.Fatalf("Spectrum: %v", err)
			}
			checkImage(t, b.Bytes())
		})
	}
}

func TestVsRate(t *testing.T) {
	rates := func(lo time.Duration, offered ...float64) []*bench.Result {
		var rs []*bench.Result
		for i, o := range offered {
			rs = append(rs, result(o, 5000, lo, float64(i+1)))
		}
		return rs
	}
	tests := []struct {
		name   string
		curves []Curve
	}{
		{"floor and scenarios, rates out of order", []Curve{
			{Name: "floor", Floor: true, Results: rates(50*time.Microsecond, 1000, 4000, 2000, 8000)},
			{Name: "cached", Results: rates(80*time.Microsecond, 8000, 1000, 2000)},
			{Name: "store", Results: rates(300*time.Microsecond, 1000, 2000, 4000, 8000)},
		}},
		{"one rate", []Curve{{Name: "single", Results: rates(time.Millisecond, 500)}}},
		{"repeated rate", []Curve{{Name: "twice", Results: rates(time.Millisecond, 500, 500)}}},
		{"all zero latencies", []Curve{{Name: "zero", Results: []*bench.Result{constant(100, 0)}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var orders [][]float64
			for _, c := range tt.curves {
				orders = append(orders, offered(c.Results))
			}
			var b bytes.Buffer
			if err := VsRate(&b, "vs rate: "+tt.name, tt.curves); err != nil {
				t.Fatalf("VsRate: %v", err)
			}
			checkImage(t, b.Bytes())
			for i, c := range tt.curves {
				if diff := cmp.Diff(orders[i], offered(c.Results)); diff != "" {
					t.Errorf("VsRate reordered curve %q's Results (-before +after):\n%s", c.Name, diff)
				}
			}
		})
	}
}

func offered(rs []*bench.Result) []float64 {
	var out []float64
	for _, r := range rs {
		out = append(out, r.Offered)
	}
	return out
}

func TestErrors(t *testing.T) {
	good := constant(10, time.Millisecond)
	tests := []struct {
		name string
		draw func(io.Writer) error
		want string // a substring of the error
	}{
		{"spectrum without lines", func(w io.Writer) error { return Spectrum(w, "t", nil) }, "at least one line"},
		{"spectrum nil result", func(w io.Writer) error {
			return Spectrum(w, "t", []Line{{Name: "ok", Result: good}, {Name: "missing"}})
		}, `line 1 ("missing") has a nil Result`},
		{"spectrum empty result", func(w io.Writer) error {
			return Spectrum(w, "t", []Line{{Name: "idle", Floor: true, Result: &bench.Result{}}})
		}, `line 0 ("idle") has an empty Result`},
		{"vs rate without curves", func(w io.Writer) error { return VsRate(w, "t", []Curve{}) }, "at least one curve"},
		{"vs rate curve without results", func(w io.Writer) error {
			return VsRate(w, "t", []Curve{{Name: "none"}})
		}, `curve 0 ("none") has no results`},
		{"vs rate nil result", func(w io.Writer) error {
			return VsRate(w, "t", []Curve{{Name: "ok", Results: []*bench.Result{good}}, {Name: "gap", Results: []*bench.Result{good, nil}}})
		}, `curve 1 ("gap") result 1 has a nil Result`},
		{"vs rate empty result", func(w io.Writer) error {
			return VsRate(w, "t", []Curve{{Name: "idle", Results: []*bench.Result{{Offered: 10}}}})
		}, `curve 0 ("idle") result 0 has an empty Result`},
		{"vs rate NaN rate", func(w io.Writer) error {
			r := constant(10, time.Millisecond)
			r.Offered = math.NaN()
			return VsRate(w, "t", []Curve{{Name: "nan", Results: []*bench.Result{r}}})
		}, `curve "nan"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			err := tt.draw(&b)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want one containing %q", err, tt.want)
			}
			if b.Len() != 0 {
				t.Errorf("wrote %d bytes despite the error", b.Len())
			}
		})
	}
}

func TestNines(t *testing.T) {
	tests := []struct {
		p    float64
		want float64
	}{
		{0, 0},
		{50, math.Log10(2)},
		{90, 1},
		{99, 2},
		{99.9, 3},
		{99.99, 4},
	}
	for _, tt := range tests {
		if got := nines(tt.p); math.Abs(got-tt.want) > 1e-9 {
			t.Errorf("nines(%v) = %v, want %v", tt.p, got, tt.want)
		}
	}
}

func TestNinesTicks(t *testing.T) {
	want := gplot.ConstantTicks{
		{Value: math.Log10(2), Label: "50"},
		{Value: 1, Label: "90"},
		{Value: 2, Label: "99"},
		{Value: 3, Label: "99.9"},
		{Value: 4, Label: "99.99"},
	}
	if diff := cmp.Diff(want, ninesTicks(), cmpopts.EquateApprox(0, 1e-9)); diff != "" {
		t.Errorf("ninesTicks() mismatch (-want +got):\n%s", diff)
	}
}

func TestSpectrumSamples(t *testing.T) {
	xs, ps := spectrumSamples()
	if len(xs) != len(ps) || len(xs) < 2 {
		t.Fatalf("spectrumSamples() gave %d xs and %d ps", len(xs), len(ps))
	}
	if got, want := []float64{xs[0], xs[len(xs)-1], ps[0], ps[len(ps)-1]}, []float64{0, 4, 0, 99.99}; !cmp.Equal(got, want, cmpopts.EquateApprox(0, 1e-9)) {
		t.Errorf("first and last x, p = %v, want %v", got, want)
	}
	for i := range xs {
		if got := nines(ps[i]); math.Abs(got-xs[i]) > 1e-9 {
			t.Errorf("sample %d: nines(%v) = %v, want its x %v", i, ps[i], got, xs[i])
		}
	}
}

func TestDecades(t *testing.T) {
	tests := []struct {
		lo, hi         float64
		wantLo, wantHi float64
	}{
		{1, 1, 1, 10},
		{1000, 1000, 1000, 10000},
		{35, 4200, 10, 10000},
		{1, 1e7, 1, 1e7},
		{2.5, 9, 1, 10},
	}
	for _, tt := range tests {
		lo, hi := decades(tt.lo, tt.hi)
		if lo != tt.wantLo || hi != tt.wantHi {
			t.Errorf("decades(%v, %v) = %v, %v, want %v, %v", tt.lo, tt.hi, lo, hi, tt.wantLo, tt.wantHi)
		}
	}
}

func TestLatencyTicks(t *testing.T) {
	var got []string
	for _, tk := range latencyTicks(1, 1e7) {
		if !tk.IsMinor() {
			got = append(got, tk.Label)
		}
	}
	want := []string{"1µs", "10µs", "100µs", "1ms", "10ms", "100ms", "1s", "10s"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("latencyTicks(1, 1e7) labels mismatch (-want +got):\n%s", diff)
	}
}

func TestMicros(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want float64
	}{
		{-time.Second, 1},
		{0, 1},
		{500 * time.Nanosecond, 1},
		{time.Microsecond, 1},
		{1500 * time.Nanosecond, 1.5},
		{time.Second, 1e6},
	}
	for _, tt := range tests {
		if got := micros(tt.d); got != tt.want {
			t.Errorf("micros(%v) = %v, want %v", tt.d, got, tt.want)
		}
	}
}

func TestLineStyle(t *testing.T) {
	floor := lineStyle(true, 3)
	if len(floor.Dashes) == 0 {
		t.Errorf("the floor is not dashed")
	}
	if a, b := lineStyle(false, 0), lineStyle(false, 1); a.Color == b.Color {
		t.Errorf("lines 0 and 1 share colour %v", a.Color)
	}
	if a, b := lineStyle(false, 2), lineStyle(false, 2); a.Color != b.Color {
		t.Errorf("line 2's colour is %v then %v", a.Color, b.Color)
	}
	if s := lineStyle(false, 0); len(s.Dashes) != 0 || s.Color == floor.Color {
		t.Errorf("a scenario line looks like the floor: %+v", s)
	}
}
