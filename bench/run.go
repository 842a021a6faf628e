// Package bench is consentd's load harness as a library: an open-loop runner
// that measures each request from the moment it was meant to be sent (so a
// slow server cannot hide its queue behind a polite load generator), the
// Result it produces (counts, errors and an HDR latency histogram), the
// contact pickers that shape the load, and the markdown and JSON report.
//
// It owns the measuring, not the scenarios: what a request does (a Check, a
// health call, a direct Redis read) is an Op handed in by cmd/consentbench,
// which measures consentd through its client, like a user would.
package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"
)

// Op is one request; i is its sequence number. It must return soon after ctx
// is done: Run waits for every Op it started.
type Op func(ctx context.Context, i int) error

// Load is an open-loop schedule: request i is due at start + i/Rate whether or
// not earlier requests have been answered. Requests are numbered from 0,
// warmup first.
type Load struct {
	Rate     float64       // requests per second, scheduled at fixed intervals (1/Rate apart)
	Duration time.Duration // how long to schedule measured requests for; the run stops by itself
	Warmup   time.Duration // requests scheduled in the warmup (before Duration) are run but not recorded
	Workers  int           // concurrent in-flight requests at most; a request whose worker is busy waits, and its wait counts
	Timeout  time.Duration // per-request deadline, counted from the intended send time (default DefaultTimeout); a timeout is an error
}

// DefaultTimeout is the per-request deadline when Load.Timeout is zero.
const DefaultTimeout = time.Second

// maxRequests bounds one run's schedule; past it Rate*(Warmup+Duration) is
// a typo, not a benchmark, and sequence numbers could overflow.
const maxRequests = 1 << 32

// schedule is a validated Load in the form the workers use.
type schedule struct {
	rate    float64
	warm    int // requests [0, warm) are warmup
	total   int // requests [warm, total) are measured
	workers int
	timeout time.Duration
}

func (l Load) schedule() (schedule, error) {
	switch {
	case !(l.Rate > 0) || math.IsInf(l.Rate, 1):
		return schedule{}, fmt.Errorf("bench: Load.Rate must be a positive, finite number of requests per second, got %v", l.Rate)
	case l.Duration <= 0:
		return schedule{}, fmt.Errorf("bench: Load.Duration must be positive, got %v", l.Duration)
	case l.Warmup < 0:
		return schedule{}, fmt.Errorf("bench: Load.Warmup must not be negative, got %v", l.Warmup)
	case l.Workers <= 0:
		return schedule{}, fmt.Errorf("bench: Load.Workers must be positive, got %d", l.Workers)
	case l.Timeout < 0:
		return schedule{}, fmt.Errorf("bench: Load.Timeout must not be negative (zero means %v), got %v", DefaultTimeout, l.Timeout)
	}
	warm, measured := slots(l.Rate, l.Warmup), slots(l.Rate, l.Duration)
	if measured < 1 {
		return schedule{}, fmt.Errorf("bench: Load schedules no measured request: Rate %v × Duration %v is below one", l.Rate, l.Duration)
	}
	if warm+measured > maxRequests {
		return schedule{}, fmt.Errorf("bench: Load schedules %.0f requests, more than the %d one run may have", warm+measured, int64(maxRequests))
	}
	s := schedule{rate: l.Rate, warm: int(warm), total: int(warm + measured), workers: l.Workers, timeout: l.Timeout}
	if s.timeout == 0 {
		s.timeout = DefaultTimeout
	}
	return s, nil
}

// slots is how many requests fit in d at rate: floor(rate*d), so a run never
// offers more than it was asked to. Products that float arithmetic leaves a
// hair below a whole number (0.1/s × 50s) count as that whole number.
func slots(rate float64, d time.Duration) float64 {
	x := rate * d.Seconds()
	if n := math.Round(x); math.Abs(x-n) <= 1e-9*math.Max(1, x) {
		return n
	}
	return math.Floor(x)
}

// at is request i's offset from the start of the run. It is computed from i,
// not accumulated, so rounding does not drift over a long run.
func (s schedule) at(i int) time.Duration {
	return time.Duration(float64(i) * float64(time.Second) / s.rate)
}

// Run offers l's schedule to op and records how long each measured request
// took from its intended send time (t0 + i/Rate) to its completion, so time
// spent waiting for a busy worker, or for a late timer in this process,
// counts as latency rather than disappearing (no coordinated omission).
//
// At most Rate×Warmup + Rate×Duration requests are started (each term rounded
// down). Run returns once the schedule has ended and every started request has
// finished or passed its deadline. Cancelling ctx stops it early: it returns
// what was recorded with ctx.Err(); requests that failed only because of that
// cancellation are not counted.
func Run(ctx context.Context, l Load, op Op) (*Result, error) {
	s, err := l.schedule()
	if err != nil {
		return nil, err
	}
	if op == nil {
		return nil, errors.New("bench: Run needs an Op")
	}
	rec := recorder{res: &Result{Offered: l.Rate}}
	// One pacer hands sequence numbers to the workers at their due times; a
	// number handed over while every worker is busy waits in the queue, and
	// its wait counts as latency.
	work := make(chan int, s.workers)
	t0 := time.Now()
	var wg sync.WaitGroup
	for range min(s.workers, s.total) {
		wg.Go(func() {
			for i := range work {
				if ctx.Err() == nil {
					s.do(ctx, i, t0.Add(s.at(i)), op, &rec)
				}
			}
		})
	}
	// The pacer runs on a goroutine of its own: it locks its OS thread and
	// changes the thread's settings, and ending while locked retires the
	// thread instead of handing it back to the caller.
	wg.Go(func() { s.pace(ctx, t0, work) })
	wg.Wait()
	stopped := ctx.Err()

	// The measured window opens when the first measured request is due and
	// closes when the schedule would have run out of slots, or later if the last
	// answer came later: a server that fell behind is judged by when it caught up.
	res := rec.res
	start, end := t0.Add(s.at(s.warm)), t0.Add(s.at(s.total))
	if stopped != nil {
		end = time.Now()
	}
	if rec.last.After(end) {
		end = rec.last
	}
	if w := end.Sub(start); w > 0 {
		res.Achieved = float64(res.Count-res.Errors) / w.Seconds()
	}
	return res, stopped
}

// pace hands each request to the workers when it is due, then closes work.
// How it waits matters more than anything else in the harness: Go's timers
// can wake about a millisecond late here, which would swamp a floor of a few
// hundred microseconds, and a spinning pacer takes the core the server needs
// on a 2-core machine. So it sleeps in the kernel on a thread of its own
// (see pace_linux.go); the lateness left counts as latency, and
// TestPacerLateness measures it.
func (s schedule) pace(ctx context.Context, t0 time.Time, work chan<- int) {
	defer close(work)
	pinPacer()
	for i := 0; i < s.total; i++ {
		if !sleepUntil(ctx, t0.Add(s.at(i))) {
			return
		}
		select {
		case work <- i:
		case <-ctx.Done():
			return
		}
	}
}

// do runs request i, due at due, and records it unless it is warmup.
func (s schedule) do(ctx context.Context, i int, due time.Time, op Op, rec *recorder) {
	// The deadline runs from the intended send time, like the latency: a
	// request is a timeout exactly when its latency would pass Timeout, and a
	// backlog behind a stalled server drains instead of outliving the run.
	deadline := due.Add(s.timeout)
	var err error
	if time.Now().Before(deadline) {
		rctx, cancel := context.WithDeadline(ctx, deadline)
		err = op(rctx, i)
		cancel()
	} else {
		err = s.timedOut()
	}
	done := time.Now()
	if err == nil && done.After(deadline) {
		// An answer after the deadline is one the caller gave up on.
		err = s.timedOut()
	}
	if err != nil && ctx.Err() != nil {
		return // cut short by our caller, not a measurement of the system
	}
	if i < s.warm {
		return
	}
	rec.record(done.Sub(due), done, err)
}

func (s schedule) timedOut() error {
	return fmt.Errorf("no answer within the %v timeout: %w", s.timeout, context.DeadlineExceeded)
}

// recorder is the Result the workers of one run share. One histogram behind
// a mutex, not one per worker: a histogram of this range is about 150 KB and
// Workers may run to thousands, while the lock is held for well under a
// microsecond per request.
type recorder struct {
	mu   sync.Mutex
	res  *Result
	last time.Time // latest completion of a measured request
}

func (r *recorder) record(latency time.Duration, done time.Time, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.res.Record(latency, err)
	if done.After(r.last) {
		r.last = done
	}
}
