package bench

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// fakeServer answers a probe at rate with a p99 that is fine up to knee and
// far over the limit above it.
func fakeServer(knee float64, calls *[]float64) func(context.Context, float64) (*Result, error) {
	return func(_ context.Context, rate float64) (*Result, error) {
		*calls = append(*calls, rate)
		r := &Result{Offered: rate, Achieved: rate}
		d := 200 * time.Microsecond
		if rate > knee {
			d = 5 * time.Millisecond
		}
		for range 100 {
			r.Record(d, nil)
		}
		return r, nil
	}
}

func TestMaxRate(t *testing.T) {
	limit := time.Millisecond
	for _, tc := range []struct {
		name      string
		s         Search
		knee      float64
		wantBest  float64 // 0: none kept
		wantCalls []float64
	}{
		{"doubles then bisects", Search{Start: 1000, Ceiling: 64000, Steps: 3, Limit: limit}, 11000,
			11000, []float64{1000, 2000, 4000, 8000, 16000, 12000, 10000, 11000}},
		{"stops at the ceiling", Search{Start: 1000, Ceiling: 5000, Steps: 3, Limit: limit}, 1e9,
			5000, []float64{1000, 2000, 4000, 5000}},
		{"start already missed", Search{Start: 1000, Ceiling: 64000, Steps: 3, Limit: limit}, 500,
			0, []float64{1000}},
		{"no bisection", Search{Start: 1000, Ceiling: 64000, Steps: 0, Limit: limit}, 3000,
			2000, []float64{1000, 2000, 4000}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls []float64
			best, probes, err := MaxRate(context.Background(), tc.s, fakeServer(tc.knee, &calls))
			if err != nil {
				t.Fatal(err)
			}
			var got float64
			if best != nil {
				got = best.Offered
			}
			if got != tc.wantBest {
				t.Errorf("best rate = %v, want %v", got, tc.wantBest)
			}
			if diff := cmp.Diff(tc.wantCalls, calls); diff != "" {
				t.Errorf("rates probed (-want +got):\n%s", diff)
			}
			if len(probes) != len(calls) {
				t.Errorf("%d probes returned for %d run", len(probes), len(calls))
			}
		})
	}
}

func TestKeeps(t *testing.T) {
	ok := func() *Result {
		r := &Result{Offered: 1000, Achieved: 1000}
		r.Record(100*time.Microsecond, nil)
		return r
	}
	slow := ok()
	for range 10 {
		slow.Record(2*time.Millisecond, nil)
	}
	failed := ok()
	failed.Record(100*time.Microsecond, errors.New("unavailable"))
	behind := ok()
	behind.Achieved = 900
	for _, tc := range []struct {
		name string
		r    *Result
		want bool
	}{
		{"fast", ok(), true},
		{"p99 over the limit", slow, false},
		{"an error", failed, false},
		{"falls behind the offered rate", behind, false},
		{"empty", &Result{Offered: 1000}, false},
		{"nil", nil, false},
	} {
		if got := Keeps(tc.r, time.Millisecond); got != tc.want {
			t.Errorf("%s: Keeps = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestMaxRateStopsOnProbeError(t *testing.T) {
	boom := errors.New("sidecar died")
	n := 0
	best, probes, err := MaxRate(context.Background(), Search{Start: 1000, Ceiling: 8000, Steps: 2, Limit: time.Millisecond},
		func(_ context.Context, rate float64) (*Result, error) {
			if n++; n == 2 {
				return nil, boom
			}
			r := &Result{Offered: rate, Achieved: rate}
			r.Record(time.Microsecond*100, nil)
			return r, nil
		})
	if !errors.Is(err, boom) || best == nil || best.Offered != 1000 || len(probes) != 1 {
		t.Errorf("MaxRate = best %v, %d probes, err %v; want best 1000, 1 probe, the probe's error", best, len(probes), err)
	}
}
