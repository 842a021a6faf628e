package soak

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The faults, in the order the schedule cycles through them.
const (
	FaultSigstop  = "sigstop"
	FaultSigkill  = "sigkill"
	FaultFlushall = "flushall"
	FaultDrift    = "drift"
	FaultFeed     = "feed"
	FaultSidecar  = "sidecar"
)

// AllFaults lists every fault the schedule knows, in its order.
func AllFaults() []string {
	return []string{FaultSigstop, FaultSigkill, FaultFlushall, FaultDrift, FaultFeed, FaultSidecar}
}

// fault is one injected fault, as it went.
type fault struct {
	Kind     string
	Target   string // redis, A or B
	Injected time.Time
	Ended    time.Time // the fault undone (or the operator's first act)
	// Recovered is when both sidecars were SERVING again; if recovery
	// failed, when the soak gave up.
	Recovered time.Time
	Notes     []string
	Failed    string // why recovery failed; "" if it did not
	// Expect are the sidecars (by index) that must leave SERVING by Ended;
	// judged says whether the fault lasted long enough to hold them to it.
	Expect []int
	judged bool
}

// detectBound is how soon consentd must go NOT_SERVING when its store stops
// answering or is wiped (issue 15); a fault held for less than 3 times that
// is not held against a sidecar that stayed SERVING.
const detectBound = time.Second

func (f *fault) note(format string, args ...any) {
	f.Notes = append(f.Notes, fmt.Sprintf(format, args...))
}

// inject runs fault kind to its recovery, in the round-th cycle of the
// schedule (the sidecar fault takes the sidecars in turn). It always undoes
// what it did, also when ctx is done.
func (e *env) inject(ctx context.Context, kind string, round int, cfg Config, rec *Recorder) *fault {
	f := &fault{Kind: kind, Target: "redis", Expect: []int{0, 1}}
	defer func() {
		// The operator's waits (FLUSHALL, drift) are --notice-timeout long;
		// the other faults are judged if held long enough.
		f.judged = f.judged || f.Ended.Sub(f.Injected) >= 3*detectBound
	}()
	// Undoing uses its own context: a cancelled run must not leave Redis
	// stopped or a sidecar down before it cleans up.
	undo, cancel := context.WithTimeout(context.Background(), cfg.RecoveryTimeout)
	defer cancel()
	hold := func() { sleep(ctx, cfg.FaultHold) }
	switch kind {
	case FaultSigstop:
		if err := e.redis.Signal(syscall.SIGSTOP); err != nil {
			f.Failed = err.Error()
			return f
		}
		f.Injected = time.Now()
		hold()
		if err := e.redis.Signal(syscall.SIGCONT); err != nil {
			f.Failed = err.Error()
			return f
		}
		f.Ended = time.Now()
	case FaultSigkill:
		if err := e.redis.Kill(); err != nil {
			f.Failed = err.Error()
			return f
		}
		f.Injected = time.Now()
		hold()
		if err := e.redis.Restart(); err != nil {
			f.Failed = err.Error()
			return f
		}
		f.Ended = time.Now()
	case FaultFlushall:
		sent := time.Now()
		err := e.admin.FlushAll(undo).Err()
		f.Injected = time.Now()
		if err != nil {
			f.Failed = "FLUSHALL: " + err.Error()
			return f
		}
		wipe := rec.Wipe(sent, f.Injected)
		f.judged = true
		// The operator acts once both sidecars say the store is gone.
		if err := e.wait(ctx, cfg.NoticeTimeout, notServing, e.sidecars...); err != nil {
			f.note("not both NOT_SERVING %s", err)
		}
		f.Ended = time.Now()
		for i, s := range e.sidecars {
			if at, ok := s.leftServing(f.Injected); ok {
				rec.Noticed(wipe, i, at)
			}
		}
		for i, s := range e.sidecars {
			if err := e.stop(s, false); err != nil {
				f.note("stopping %s: %v", s.name, err)
			}
			init := i == 0 && e.initFlag
			if i == 0 {
				rec.Reinit(wipe, time.Now())
			}
			if err := e.start(undo, s, init); err != nil {
				f.Failed = "operator restart: " + err.Error()
				return f
			}
		}
		if e.initFlag {
			f.note("operator: A restarted with --redis-init, B plainly")
		} else {
			f.note("operator: A and B restarted (no --redis-init)")
		}
	case FaultDrift:
		before, err := e.evicted(undo)
		if err == nil {
			err = e.admin.ConfigSet(undo, "maxmemory-policy", "allkeys-lru").Err()
		}
		if err != nil {
			f.Failed = err.Error()
			return f
		}
		f.Injected = time.Now()
		f.judged = true
		// consentd checks its settings every few seconds, so the operator
		// puts the policy back once both sidecars complain, as a real one
		// would (after the hold at least, and after --notice-timeout at
		// most).
		hold()
		if err := e.wait(ctx, cfg.NoticeTimeout-cfg.FaultHold, notServing, e.sidecars...); err != nil {
			f.note("not both NOT_SERVING %s", err)
		}
		if err := e.admin.ConfigSet(undo, "maxmemory-policy", "noeviction").Err(); err != nil {
			f.Failed = err.Error()
			return f
		}
		f.Ended = time.Now()
		if err := e.waitAll(ctx, Serving, cfg.NoticeTimeout); err != nil {
			f.note("not SERVING again %s: operator restarted both", err)
			for _, s := range e.sidecars {
				e.stop(s, false)
				if err := e.start(undo, s, false); err != nil {
					f.Failed = "operator restart: " + err.Error()
					return f
				}
			}
		}
		defer func() {
			after, err := e.evicted(undo)
			switch {
			case err != nil:
				f.note("evicted_keys unknown: %v", err)
			case after > before:
				f.note("%d keys evicted", after-before)
				rec.Unknown(Window{From: f.Injected, To: f.Recovered})
			}
		}()
	case FaultFeed:
		f.Target, f.Expect = e.sidecars[1].name, []int{1}
		e.proxy.Stall()
		e.proxy.Cut()
		f.Injected = time.Now()
		hold()
		e.proxy.Cut() // what was held back is dropped, not delivered late
		e.proxy.Resume()
		f.Ended = time.Now()
	case FaultSidecar:
		i := round % len(e.sidecars)
		s := e.sidecars[i]
		f.Target, f.Expect = s.name, []int{i}
		if err := e.stop(s, true); err != nil {
			f.Failed = err.Error()
			return f
		}
		f.Injected = time.Now()
		hold()
		if err := e.start(undo, s, false); err != nil {
			f.Failed = "restart: " + err.Error()
			return f
		}
		f.Ended = time.Now()
	default:
		f.Failed = "unknown fault " + kind
		return f
	}
	if err := e.waitAll(undo, Serving, cfg.RecoveryTimeout); err != nil {
		f.Failed = "not SERVING again " + err.Error()
	}
	f.Recovered = time.Now()
	rec.Fault(Window{From: f.Injected, To: f.Recovered})
	return f
}

// summary is the fault's progress line.
func (f *fault) summary(t0 time.Time) string {
	s := fmt.Sprintf("%s %s at %v: held %v, both SERVING %v after", f.Kind, f.Target, f.Injected.Sub(t0).Round(time.Millisecond),
		f.Ended.Sub(f.Injected).Round(time.Millisecond), f.Recovered.Sub(f.Ended).Round(time.Millisecond))
	if len(f.Notes) > 0 {
		s += " (" + strings.Join(f.Notes, "; ") + ")"
	}
	if f.Failed != "" {
		s += ": RECOVERY FAILED: " + f.Failed
	}
	return s
}

func notServing(h Health) bool { return h != Serving }

// evicted returns Redis' evicted_keys counter.
func (e *env) evicted(ctx context.Context) (int64, error) {
	info, err := e.admin.Info(ctx, "stats").Result()
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "evicted_keys:"); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("INFO stats has no evicted_keys")
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
