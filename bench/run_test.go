package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"
)

// The runner's tests assert counts, orderings and lower bounds, which a slow
// or loaded machine cannot break; never an upper bound on a timing.

func TestRunSchedulesEveryRequestOnceAndNeverEarly(t *testing.T) {
	tests := []struct {
		name         string
		load         Load
		wantCalls    int
		wantMeasured int64
	}{
		{"steady", Load{Rate: 1000, Duration: 50 * time.Millisecond, Workers: 4}, 50, 50},
		{"warmup", Load{Rate: 500, Duration: 40 * time.Millisecond, Warmup: 20 * time.Millisecond, Workers: 1}, 30, 20},
		{"more workers than requests", Load{Rate: 100, Duration: 100 * time.Millisecond, Workers: 200}, 10, 10},
		{"rounds down, never offers more", Load{Rate: 333, Duration: 30 * time.Millisecond, Workers: 8}, 9, 9},
		{"slow rate", Load{Rate: 0.1, Duration: 10 * time.Second, Workers: 1}, 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			calls := map[int]int{}
			var early []string
			before := time.Now() // no later than the run's own start
			res, err := Run(t.Context(), tt.load, func(ctx context.Context, i int) error {
				// Request i is due at start + i/Rate; it must not be sent sooner.
				elapsed := time.Since(before)
				due := time.Duration(float64(i) * float64(time.Second) / tt.load.Rate)
				mu.Lock()
				defer mu.Unlock()
				calls[i]++
				if elapsed < due {
					early = append(early, fmt.Sprintf("request %d sent after %v, due at %v", i, elapsed, due))
				}
				return nil
			})
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if len(calls) != tt.wantCalls {
				t.Errorf("%d distinct requests sent, want %d", len(calls), tt.wantCalls)
			}
			for i := range tt.wantCalls {
				if calls[i] != 1 {
					t.Errorf("request %d sent %d times, want once", i, calls[i])
				}
			}
			for _, e := range early {
				t.Error(e)
			}
			if res.Count != tt.wantMeasured || res.Errors != 0 {
				t.Errorf("Count, Errors = %d, %d, want %d, 0", res.Count, res.Errors, tt.wantMeasured)
			}
			if res.Offered != tt.load.Rate {
				t.Errorf("Offered = %v, want %v", res.Offered, tt.load.Rate)
			}
		})
	}
}

func TestRunDoesNotRecordWarmup(t *testing.T) {
	// Warmup requests fail; none of those failures may reach the result.
	l := Load{Rate: 1000, Warmup: 30 * time.Millisecond, Duration: 20 * time.Millisecond, Workers: 4}
	var mu sync.Mutex
	sent := 0
	res, err := Run(t.Context(), l, func(ctx context.Context, i int) error {
		mu.Lock()
		sent++
		mu.Unlock()
		if i < 30 {
			return errors.New("cold")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if sent != 50 {
		t.Errorf("sent %d requests, want 50 (30 warmup + 20 measured)", sent)
	}
	if res.Count != 20 || res.Errors != 0 || len(res.ErrorSamples) != 0 {
		t.Errorf("Count, Errors, samples = %d, %d, %q; want 20, 0, none", res.Count, res.Errors, res.ErrorSamples)
	}
}

func TestRunCountsErrorsWithSamples(t *testing.T) {
	l := Load{Rate: 1000, Duration: 40 * time.Millisecond, Workers: 4}
	res, err := Run(t.Context(), l, func(ctx context.Context, i int) error {
		if i%2 == 0 {
			return fmt.Errorf("kind %d", i%7)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.Count != 40 || res.Errors != 20 {
		t.Errorf("Count, Errors = %d, %d, want 40, 20", res.Count, res.Errors)
	}
	if len(res.ErrorSamples) != maxErrorSamples {
		t.Errorf("got %d samples %q, want %d", len(res.ErrorSamples), res.ErrorSamples, maxErrorSamples)
	}
	seen := map[string]bool{}
	for _, s := range res.ErrorSamples {
		if !strings.HasPrefix(s, "kind ") || seen[s] {
			t.Errorf("sample %q: want distinct errors the op returned", s)
		}
		seen[s] = true
	}
	// Failures are not throughput: 20 successes over a 40 ms window at most.
	if res.Achieved > 20/0.040+1e-9 {
		t.Errorf("Achieved = %v, counts failures (at most %v successes/s)", res.Achieved, 20/0.040)
	}
}

func TestRunTimeoutIsAnError(t *testing.T) {
	const timeout = 20 * time.Millisecond
	tests := []struct {
		name string
		op   Op
	}{
		{"op honours its deadline", func(ctx context.Context, i int) error {
			<-ctx.Done()
			return ctx.Err()
		}},
		{"op answers too late", func(ctx context.Context, i int) error {
			time.Sleep(timeout + 10*time.Millisecond)
			return nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := Load{Rate: 200, Duration: 50 * time.Millisecond, Workers: 10, Timeout: timeout}
			res, err := Run(t.Context(), l, tt.op)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if res.Count != 10 || res.Errors != 10 {
				t.Errorf("Count, Errors = %d, %d, want 10, 10", res.Count, res.Errors)
			}
			if len(res.ErrorSamples) == 0 || !strings.Contains(res.ErrorSamples[0], "deadline exceeded") {
				t.Errorf("samples %q, want a deadline error", res.ErrorSamples)
			}
			// A timeout is in the tail, not dropped from it.
			if got := res.P50(); got < timeout {
				t.Errorf("P50 = %v, want at least the %v the requests waited", got, timeout)
			}
		})
	}
}

func TestRunLatencyIncludesQueueing(t *testing.T) {
	// One worker, 10 ms per request, two requests due every 10 ms: request i
	// cannot finish before (i+1)×10 ms, though it is due at i×5 ms, so its
	// latency is at least 10 ms + i×5 ms. A closed-loop tool would report
	// ~10 ms throughout.
	const service = 10 * time.Millisecond
	l := Load{Rate: 200, Duration: 200 * time.Millisecond, Workers: 1, Timeout: time.Minute}
	res, err := Run(t.Context(), l, func(ctx context.Context, i int) error {
		time.Sleep(service)
		return nil
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.Count != 40 {
		t.Fatalf("Count = %d, want 40", res.Count)
	}
	lower := func(i int) time.Duration { return service + time.Duration(i)*5*time.Millisecond }
	tests := []struct {
		name string
		got  time.Duration
		min  time.Duration
	}{
		// The k-th smallest latency is at least the k-th smallest lower bound.
		{"p50 (20th of 40)", res.P50(), lower(19)},
		{"p90 (36th of 40)", res.P90(), lower(35)},
		{"max", res.Max(), lower(39)},
	}
	for _, tt := range tests {
		if tt.got < tt.min {
			t.Errorf("%s = %v, want at least %v (service %v plus queueing)", tt.name, tt.got, tt.min, service)
		}
	}
	if res.P50() <= 2*service {
		t.Errorf("P50 = %v, barely above the %v service time: queueing is not counted", res.P50(), service)
	}
	// 40 requests, each ≥ 10 ms, one at a time: at most 100 per second.
	if res.Achieved > 100 {
		t.Errorf("Achieved = %v, want at most 100/s for serial 10 ms requests", res.Achieved)
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	// An hour-long schedule, cancelled by request 20 while later requests are
	// in flight and waiting for it.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	l := Load{Rate: 1000, Duration: time.Hour, Workers: 8}
	start := time.Now()
	res, err := Run(ctx, l, func(ctx context.Context, i int) error {
		switch {
		case i == 20:
			cancel()
		case i > 20:
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	})
	if elapsed := time.Since(start); elapsed > 30*time.Second {
		t.Errorf("Run took %v to notice the cancel of an hour-long run", elapsed)
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	if res == nil {
		t.Fatal("no Result: want what was recorded before the cancel")
	}
	// Requests 0..20 may have answered; the ones cut off by the cancel are
	// neither answers nor errors of the system.
	if res.Count > 21 || res.Errors != 0 {
		t.Errorf("Count, Errors = %d, %d, want at most 21, 0", res.Count, res.Errors)
	}
}

func TestRunCancelledBeforeStart(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	res, err := Run(ctx, Load{Rate: 1000, Duration: time.Hour, Workers: 4}, func(ctx context.Context, i int) error {
		return nil
	})
	if !errors.Is(err, context.Canceled) || res == nil || res.Count != 0 {
		t.Errorf("Run = %+v, %v; want an empty Result and context.Canceled", res, err)
	}
}

func TestRunRefusesInvalidLoad(t *testing.T) {
	ok := Load{Rate: 100, Duration: time.Second, Workers: 1}
	with := func(f func(*Load)) Load { l := ok; f(&l); return l }
	nop := func(ctx context.Context, i int) error { return nil }
	tests := []struct {
		name string
		load Load
		op   Op
		want string
	}{
		{"zero rate", with(func(l *Load) { l.Rate = 0 }), nop, "Rate"},
		{"negative rate", with(func(l *Load) { l.Rate = -1 }), nop, "Rate"},
		{"NaN rate", with(func(l *Load) { l.Rate = math.NaN() }), nop, "Rate"},
		{"infinite rate", with(func(l *Load) { l.Rate = math.Inf(1) }), nop, "Rate"},
		{"zero duration", with(func(l *Load) { l.Duration = 0 }), nop, "Duration"},
		{"negative warmup", with(func(l *Load) { l.Warmup = -time.Second }), nop, "Warmup"},
		{"zero workers", with(func(l *Load) { l.Workers = 0 }), nop, "Workers"},
		{"negative timeout", with(func(l *Load) { l.Timeout = -time.Second }), nop, "Timeout"},
		{"nothing to measure", with(func(l *Load) { l.Rate = 1; l.Duration = 500 * time.Millisecond }), nop, "no measured request"},
		{"absurd schedule", with(func(l *Load) { l.Rate = 1e9; l.Duration = time.Hour }), nop, "more than"},
		{"no op", ok, nil, "Op"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := Run(t.Context(), tt.load, tt.op)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Run(%+v) error = %v, want one naming %q", tt.load, err, tt.want)
			}
			if res != nil {
				t.Errorf("Run(%+v) = %+v, want no Result", tt.load, res)
			}
		})
	}
}
