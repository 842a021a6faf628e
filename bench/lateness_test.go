package bench

import (
	"context"
	"testing"
	"time"
)

// TestPacerLateness runs a no-op at a few rates and reports how late the
// pacer itself delivers requests: the harness's own floor, below every
// measured latency. Reported, not asserted.
func TestPacerLateness(t *testing.T) {
	for _, rate := range []float64{200, 2000, 10000} {
		r, err := Run(context.Background(), Load{Rate: rate, Duration: 300 * time.Millisecond, Workers: 16},
			func(context.Context, int) error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		if want := int64(rate * 0.3); r.Count != want {
			t.Errorf("rate %v: %d requests, want %d", rate, r.Count, want)
		}
		t.Logf("pacer lateness at %v/s: p50 %v, p99 %v, max %v", rate, r.P50(), r.P99(), r.Max())
	}
}
