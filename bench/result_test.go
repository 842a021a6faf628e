package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
)

// near reports whether got is want within the histogram's 3 significant
// digits (0.1%, doubled for bucket edges).
func near(got, want time.Duration) bool {
	diff := got - want
	return max(diff, -diff) <= want/500
}

// record fills r with latencies step, 2×step, ... n×step.
func record(r *Result, from, to int, step time.Duration) {
	for i := from; i <= to; i++ {
		r.Record(time.Duration(i)*step, nil)
	}
}

func TestResultPercentiles(t *testing.T) {
	// 1000 latencies, 0.1 ms apart: the p-th percentile is p×1000/100 × 0.1 ms.
	var r Result
	record(&r, 1, 1000, 100*time.Microsecond)
	tests := []struct {
		name string
		got  time.Duration
		want time.Duration
	}{
		{"P50", r.P50(), 50 * time.Millisecond},
		{"P90", r.P90(), 90 * time.Millisecond},
		{"P99", r.P99(), 99 * time.Millisecond},
		{"P999", r.P999(), 99900 * time.Microsecond},
		{"Max", r.Max(), 100 * time.Millisecond},
	}
	for _, tt := range tests {
		if !near(tt.got, tt.want) {
			t.Errorf("%s = %v, want %v (±0.2%%)", tt.name, tt.got, tt.want)
		}
	}
	if r.Max() != 100*time.Millisecond {
		t.Errorf("Max = %v, want exactly 100ms", r.Max())
	}

	ps := []float64{25, 0, 100, 75}
	want := []time.Duration{25 * time.Millisecond, 100 * time.Microsecond, 100 * time.Millisecond, 75 * time.Millisecond}
	got := r.Percentiles(ps)
	if len(got) != len(want) {
		t.Fatalf("Percentiles(%v) = %v, want %v", ps, got, want)
	}
	for i := range want {
		if !near(got[i], want[i]) {
			t.Errorf("Percentiles(%v)[%d] = %v, want %v", ps, i, got[i], want[i])
		}
	}
	for i, p := range r.Percentiles([]float64{99.99, 100}) {
		if p > r.Max() {
			t.Errorf("percentile %d = %v, above Max %v", i, p, r.Max())
		}
	}
}

func TestResultEdges(t *testing.T) {
	tests := []struct {
		name    string
		record  []time.Duration
		wantP50 time.Duration
		wantMax time.Duration
	}{
		{"empty", nil, 0, 0},
		{"one value", []time.Duration{3 * time.Millisecond}, 3 * time.Millisecond, 3 * time.Millisecond},
		{"past the histogram's 60 s", []time.Duration{2 * time.Minute}, 60 * time.Second, 2 * time.Minute},
		{"negative counts as zero", []time.Duration{-time.Second}, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r Result
			for _, d := range tt.record {
				r.Record(d, nil)
			}
			if got := r.P50(); !near(got, tt.wantP50) {
				t.Errorf("P50 = %v, want %v", got, tt.wantP50)
			}
			if got := r.Max(); got != tt.wantMax {
				t.Errorf("Max = %v, want %v", got, tt.wantMax)
			}
			if got := r.Count; got != int64(len(tt.record)) {
				t.Errorf("Count = %d, want %d", got, len(tt.record))
			}
			if got := r.Percentiles([]float64{50, 99}); len(got) != 2 {
				t.Errorf("Percentiles gave %d values, want 2", len(got))
			}
		})
	}
}

func TestResultErrorSamples(t *testing.T) {
	var r Result
	for i := range 100 {
		r.Record(time.Millisecond, fmt.Errorf("failure %d", i%8))
		r.Record(time.Millisecond, nil)
	}
	want := []string{"failure 0", "failure 1", "failure 2", "failure 3", "failure 4"}
	if r.Count != 200 || r.Errors != 100 || !slices.Equal(r.ErrorSamples, want) {
		t.Errorf("Count, Errors, samples = %d, %d, %q; want 200, 100, %q", r.Count, r.Errors, r.ErrorSamples, want)
	}
}

func TestResultMerge(t *testing.T) {
	// Two generators that each saw half of the latencies merge into the
	// Result of one that saw them all.
	var all, a, b Result
	record(&all, 1, 1000, 100*time.Microsecond)
	record(&a, 1, 500, 100*time.Microsecond)
	record(&b, 501, 1000, 100*time.Microsecond)
	a.Offered, a.Achieved, b.Offered, b.Achieved = 100, 90, 200, 180
	a.Record(time.Millisecond, errors.New("x"))
	b.Record(time.Millisecond, errors.New("x"))
	b.Record(time.Millisecond, errors.New("y"))
	all.Record(time.Millisecond, errors.New("x"))
	all.Record(time.Millisecond, errors.New("x"))
	all.Record(time.Millisecond, errors.New("y"))

	a.Merge(&b)
	if a.Offered != 300 || a.Achieved != 270 {
		t.Errorf("Offered, Achieved = %v, %v, want 300, 270 (rates of concurrent generators add)", a.Offered, a.Achieved)
	}
	if a.Count != all.Count || a.Errors != all.Errors || !slices.Equal(a.ErrorSamples, []string{"x", "y"}) {
		t.Errorf("Count, Errors, samples = %d, %d, %q; want %d, %d, [x y]", a.Count, a.Errors, a.ErrorSamples, all.Count, all.Errors)
	}
	ps := []float64{0, 10, 50, 90, 99, 99.9, 100}
	if got, want := a.Percentiles(ps), all.Percentiles(ps); !slices.Equal(got, want) {
		t.Errorf("merged percentiles %v, want %v", got, want)
	}
	if a.Max() != all.Max() {
		t.Errorf("merged Max = %v, want %v", a.Max(), all.Max())
	}

	t.Run("into an empty Result", func(t *testing.T) {
		var z Result
		z.Merge(&all)
		z.Merge(nil)
		if z.Count != all.Count || z.P99() != all.P99() || z.Max() != all.Max() {
			t.Errorf("got Count %d P99 %v Max %v, want %d %v %v", z.Count, z.P99(), z.Max(), all.Count, all.P99(), all.Max())
		}
	})
	t.Run("into itself", func(t *testing.T) {
		var r Result
		record(&r, 1, 100, time.Millisecond)
		p50 := r.P50()
		r.Merge(&r)
		if r.Count != 200 || r.P50() != p50 {
			t.Errorf("Count %d P50 %v, want 200 %v", r.Count, r.P50(), p50)
		}
	})
}

func TestResultJSON(t *testing.T) {
	r := &Result{Offered: 5000, Achieved: 4990}
	record(r, 1, 1000, 100*time.Microsecond)
	r.Record(time.Millisecond, errors.New("boom"))
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	keys := make([]string, 0, len(got))
	for k := range got {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	wantKeys := []string{"achieved_rps", "count", "error_samples", "errors", "max_us", "offered_rps", "p50_us", "p90_us", "p999_us", "p99_us"}
	if !slices.Equal(keys, wantKeys) {
		t.Errorf("JSON keys %v, want %v", keys, wantKeys)
	}
	if got["offered_rps"] != 5000.0 || got["count"] != 1001.0 || got["errors"] != 1.0 || got["max_us"] != 100000.0 {
		t.Errorf("JSON %s: wrong offered_rps, count, errors or max_us", b)
	}
	if p99, _ := got["p99_us"].(float64); !near(time.Duration(p99*1e3), 99*time.Millisecond) {
		t.Errorf("p99_us = %v, want about 99000", got["p99_us"])
	}

	// An empty Result still has every field, samples as an empty array.
	b, err = json.Marshal(&Result{})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"offered_rps":0,"achieved_rps":0,"count":0,"errors":0,"error_samples":[],"p50_us":0,"p90_us":0,"p99_us":0,"p999_us":0,"max_us":0}`
	if string(b) != want {
		t.Errorf("empty Result JSON\n got %s\nwant %s", b, want)
	}
}
