package bench

import (
	"context"
	"errors"
	"time"
)

// Keeps reports whether a probe at its offered rate met the bar: no errors,
// p99 within limit, and completions keeping up with what was offered (a
// server that falls behind shows it in latency too, but only once the backlog
// outgrows the run).
func Keeps(r *Result, limit time.Duration) bool {
	return r != nil && r.Count > 0 && r.Errors == 0 && r.P99() <= limit && r.Achieved >= 0.95*r.Offered
}

// Search is how MaxRate looks for the highest rate.
type Search struct {
	Start   float64       // the first rate probed
	Ceiling float64       // no rate above it is probed
	Steps   int           // bisections between the last rate kept and the first missed
	Limit   time.Duration // the p99 a rate must keep to
}

// MaxRate finds the highest offered rate at which probe keeps s.Limit
// (see Keeps): it doubles from s.Start until a probe misses or s.Ceiling is
// reached, then bisects s.Steps times between the last rate kept and the
// first missed. best is the kept probe with the highest rate (nil when even
// s.Start missed); probes are all of them in the order run, for a latency vs
// rate plot. Latency rises steeply near saturation and noise can make a
// lower rate miss where a higher one kept; the search trusts each probe once.
func MaxRate(ctx context.Context, s Search, probe func(ctx context.Context, rate float64) (*Result, error)) (best *Result, probes []*Result, err error) {
	if !(s.Start > 0) || s.Ceiling < s.Start || s.Steps < 0 || s.Limit <= 0 {
		return nil, nil, errors.New("bench: Search needs 0 < Start <= Ceiling, Steps >= 0 and a positive Limit")
	}
	try := func(rate float64) (bool, error) {
		r, err := probe(ctx, rate)
		if err != nil {
			return false, err
		}
		probes = append(probes, r)
		if !Keeps(r, s.Limit) {
			return false, nil
		}
		if best == nil || r.Offered > best.Offered {
			best = r
		}
		return true, nil
	}
	kept, missed := 0.0, 0.0
	for rate := s.Start; ; rate = min(2*rate, s.Ceiling) {
		ok, err := try(rate)
		if err != nil {
			return best, probes, err
		}
		if !ok {
			missed = rate
			break
		}
		kept = rate
		if rate == s.Ceiling {
			return best, probes, nil
		}
	}
	if kept == 0 {
		return nil, probes, nil
	}
	for range s.Steps {
		mid := (kept + missed) / 2
		ok, err := try(mid)
		if err != nil {
			return best, probes, err
		}
		if ok {
			kept = mid
		} else {
			missed = mid
		}
	}
	return best, probes, nil
}
