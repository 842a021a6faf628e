package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/consentd/consentd/consent"
	"github.com/consentd/consentd/server"
	"github.com/consentd/consentd/store"
)

// storeState is what the guard knows of the store. Every state but
// storeServing is NOT_SERVING.
type storeState int32

const (
	// storeServing: the store answers, and (Redis) is the one consentd
	// started with, with the settings it needs.
	storeServing storeState = iota
	// storeUnreachable: a check got no answer in time (or an error that
	// says nothing about the data). Calls go on: warm Checks answer from
	// the cache within the lease, the rest fail by their deadline.
	storeUnreachable
	// storeDrift: a setting the guarantees rest on changed (eviction
	// turned on, persistence weakened). Reads and writes are refused, the
	// cache's too (the data under it may be going), until an audit passes.
	storeDrift
	// storeLost: the store was wiped, replaced or rolled back, or keys
	// vanished. Everything is refused, for good: only the operator can
	// decide what the data is (restore it, or initialise a new store), and
	// consentd has to be restarted for that.
	storeLost
	numStoreStates
)

var storeStateNames = [numStoreStates]string{"serving", "unreachable", "settings_drift", "lost"}

func (s storeState) String() string { return storeStateNames[s] }

// The guard's rhythm. A store that stops answering is NOT_SERVING within
// pingEvery + pingTimeout (750 ms); a wiped or replaced Redis is caught by
// the next identity check (within identityEvery + identityTimeout, 1 s);
// settings drift and vanished keys by the next audit (within auditEvery +
// auditTimeout, 4 s). The timeouts are short because a check that takes
// longer is itself the news: the store is not answering. A store that
// answers again after it did not is checked at once, identity and audit,
// not at their next tick: it may be another Redis, or one restarted with
// other settings.
type guardConfig struct {
	pingEvery, pingTimeout         time.Duration
	identityEvery, identityTimeout time.Duration
	auditEvery, auditTimeout       time.Duration
}

func defaultGuard() guardConfig {
	return guardConfig{
		pingEvery: 250 * time.Millisecond, pingTimeout: 500 * time.Millisecond,
		identityEvery: 500 * time.Millisecond, identityTimeout: 500 * time.Millisecond,
		auditEvery: 2 * time.Second, auditTimeout: 2 * time.Second,
	}
}

// pinger is what the guard asks of every store: does it answer?
type pinger interface {
	Ping(ctx context.Context) error
}

// identityChecker is a store that can tell cheaply whether it is still the
// one consentd started with (Redis: its markers are there and unchanged, no
// sequence went back).
type identityChecker interface {
	CheckIdentity(ctx context.Context) error
}

// auditor is a store that can check the settings and the data its
// guarantees rest on (Redis: the settings of every master, evicted and
// vanished keys).
type auditor interface {
	Audit(ctx context.Context) error
}

// warner is a store whose checks also find what breaks no guarantee but
// an operator should know (Redis: keys consentd did not write), each once.
type warner interface {
	Warnings() []string
}

// guard watches the store for as long as consentd serves, keeps the health
// service (both listeners) in step with what it finds, and refuses calls
// while serving them would be unsafe (gatedRecords, gatedStore).
type guard struct {
	store pinger
	cfg   guardConfig
	hs    *health.Server
	flush func() // drops every cached record: the cache's Flush
	log   *slog.Logger

	// refusal is the error every gated call answers while the state is
	// storeDrift or storeLost, nil otherwise: the one atomic load a call
	// pays for the gate.
	refusal atomic.Pointer[error]
	state   atomic.Int32
	// faults counts the entries into each state (serving's are recoveries).
	faults [numStoreStates]atomic.Uint64

	mu sync.Mutex
	// reachable is closed when the store stops answering
	// (storeUnreachable), and made anew when it answers again: what cancels
	// a walk of the whole store (whileReachable).
	reachable chan struct{}
	// The latest failure of each check, nil once it passes again.
	pingErr, identityErr, auditErr error
	// hasIdentity and hasAudit say which checks the store has.
	hasIdentity, hasAudit bool
	// outage counts the checks that got no answer: a check that started
	// before the latest one cannot vouch for the store that answers now.
	outage uint64
	// identityDue and auditDue are the checks that have not passed since
	// the latest outage: until both have, a store that answers again is
	// not SERVING.
	identityDue, auditDue bool
	// recheck asks the audit loop for an audit now (buffer 1: one pending
	// request is enough).
	recheck chan struct{}
	drift   error // the settings failure, until an audit passes
	lost    error // the first loss: for good
}

func newGuard(st pinger, cfg guardConfig, hs *health.Server, flush func(), log *slog.Logger) *guard {
	g := &guard{store: st, cfg: cfg, hs: hs, flush: flush, log: log, reachable: make(chan struct{}), recheck: make(chan struct{}, 1)}
	_, g.hasIdentity = st.(identityChecker)
	_, g.hasAudit = st.(auditor)
	return g
}

// Run checks the store until ctx is done: Ping (and the identity check) on
// one goroutine, the slower audit on another, so a long audit never delays
// noticing that the store stopped answering.
func (g *guard) Run(ctx context.Context) {
	var wg sync.WaitGroup
	if a, ok := g.store.(auditor); ok {
		w, _ := g.store.(warner)
		wg.Go(func() {
			every(ctx, g.cfg.auditEvery, g.recheck, func() {
				g.check(ctx, &g.auditErr, g.cfg.auditTimeout, a.Audit)
				if w != nil {
					for _, detail := range w.Warnings() {
						g.log.Warn("store audit", "detail", detail)
					}
				}
			})
		})
	}
	id, hasIdentity := g.store.(identityChecker)
	var last time.Time
	var auditAskedFor uint64
	every(ctx, g.cfg.pingEvery, nil, func() {
		// Half a tick of slack: ticks jitter, and one that comes a little
		// early must not push the identity check a whole tick later.
		due := time.Since(last) >= g.cfg.identityEvery-g.cfg.pingEvery/2
		if !g.check(ctx, &g.pingErr, g.cfg.pingTimeout, g.store.Ping) {
			return
		}
		g.mu.Lock()
		identityDue, auditDue, outage := g.identityDue, g.auditDue, g.outage
		g.mu.Unlock()
		if auditDue && outage != auditAskedFor {
			// Once per outage: an audit that finds drift leaves auditDue
			// set, and the audit loop's own rhythm takes it from there.
			auditAskedFor = outage
			select {
			case g.recheck <- struct{}{}:
			default:
			}
		}
		if !hasIdentity || !(due || identityDue) {
			return
		}
		last = time.Now()
		g.check(ctx, &g.identityErr, g.cfg.identityTimeout, id.CheckIdentity)
	})
	wg.Wait()
}

// every runs fn every interval, and whenever now is sent a value, until
// ctx is done. now may be nil.
func every(ctx context.Context, interval time.Duration, now <-chan struct{}, fn func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-now:
			t.Reset(interval)
		}
		fn()
	}
}

// check runs one check with its timeout and records its outcome in *slot;
// it reports whether the check passed.
func (g *guard) check(ctx context.Context, slot *error, timeout time.Duration, fn func(context.Context) error) bool {
	g.mu.Lock()
	since := g.outage
	g.mu.Unlock()
	cctx, cancel := context.WithTimeout(ctx, timeout)
	err := fn(cctx)
	timedOut := cctx.Err() != nil
	cancel()
	if ctx.Err() != nil {
		return false // stopping: the failure is ours, not the store's
	}
	if err != nil && timedOut {
		err = fmt.Errorf("no answer within %v: %w", timeout, err)
	}
	g.recordSince(slot, err, since)
	return err == nil
}

// record notes the outcome of a check that started now and moves to the
// state it implies.
func (g *guard) record(slot *error, err error) {
	g.mu.Lock()
	since := g.outage
	g.mu.Unlock()
	g.recordSince(slot, err, since)
}

// recordSince notes the outcome of a check that started when g.outage was
// since, and moves to the state it implies.
func (g *guard) recordSince(slot *error, err error, since uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	kind := classify(err)
	*slot = nil
	switch kind {
	case storeLost:
		if g.lost == nil {
			g.lost = err
		}
	case storeDrift:
		g.drift = err
	case storeUnreachable:
		*slot = err
		// Whatever answers next may be another store, or this one
		// restarted with other settings: it serves once both checks vouch
		// for it, not merely because it answers a ping.
		g.outage++
		g.identityDue, g.auditDue = g.hasIdentity, g.hasAudit
	case storeServing:
		if slot == &g.auditErr {
			g.drift = nil // only a passing audit says the settings are right again
		}
		// Only a check that began after the latest outage vouches for the
		// store that answers now.
		if since == g.outage {
			switch slot {
			case &g.identityErr:
				g.identityDue = false
			case &g.auditErr:
				g.auditDue = false
			}
		}
	}
	next, cause := storeServing, error(nil)
	switch {
	case g.lost != nil:
		next, cause = storeLost, g.lost
	case g.drift != nil:
		next, cause = storeDrift, g.drift
	default:
		for _, err := range []error{g.pingErr, g.identityErr, g.auditErr} {
			if err != nil {
				next, cause = storeUnreachable, err
				break
			}
		}
		if next == storeServing && (g.identityDue || g.auditDue) {
			next, cause = storeUnreachable, errors.New("the store answers again; not serving until its identity check and audit pass")
		}
	}
	g.move(next, cause)
}

// classify says what a check's error means for the store.
func classify(err error) storeState {
	switch {
	case err == nil:
		return storeServing
	case errors.Is(err, store.ErrStoreLost), errors.Is(err, store.ErrNotInitialised):
		return storeLost
	case errors.Is(err, store.ErrSettings):
		return storeDrift
	}
	return storeUnreachable
}

// move enters state next, for cause, once: each transition is logged,
// counted and shown to the health service exactly once. g.mu is held.
func (g *guard) move(next storeState, cause error) {
	prev := storeState(g.state.Load())
	if next == prev {
		return
	}
	switch next {
	case storeLost:
		refusal := error(&storeRefusal{state: storeLost, cause: cause})
		g.refusal.Store(&refusal)
		// Nothing cached may be answered again: it came from a store
		// that is gone.
		g.flush()
		g.log.Error("store lost: NOT_SERVING; every Check and write is refused until consentd is restarted",
			"error", cause, "was", prev.String(), "recovery", lostRecovery)
	case storeDrift:
		refusal := error(&storeRefusal{state: storeDrift, cause: cause})
		g.refusal.Store(&refusal)
		g.log.Error("store settings unsafe: NOT_SERVING; every Check and write is refused until they are restored",
			"error", cause, "was", prev.String())
	case storeUnreachable:
		g.refusal.Store(nil)
		g.log.Warn("store unreachable: NOT_SERVING; cached records answer within the lease, other calls fail by their deadline",
			"error", cause, "was", prev.String())
	case storeServing:
		g.refusal.Store(nil)
		g.log.Info("store answers again: SERVING", "was", prev.String())
	}
	if next == storeUnreachable {
		close(g.reachable)
	}
	if prev == storeUnreachable {
		g.reachable = make(chan struct{})
	}
	g.state.Store(int32(next))
	g.faults[next].Add(1)
	status := healthpb.HealthCheckResponse_NOT_SERVING
	if next == storeServing {
		status = healthpb.HealthCheckResponse_SERVING
	}
	setHealth(g.hs, status)
}

// lostRecovery is what the operator does about a lost store.
const lostRecovery = "restore the data (a Redis backup, or consentctl import of a consentctl export) and restart consentd; " +
	"start once with --redis-init only if the store is meant to be new and empty"

// refused is the error a gated call answers now, or nil.
func (g *guard) refused() error {
	if p := g.refusal.Load(); p != nil {
		return *p
	}
	return nil
}

// whileReachable runs fn, a call with no deadline of its own (a walk of the
// whole store takes as long as the store is large), with ctx cancelled as
// soon as the guard finds the store not answering: such a call ends within
// the guard's detection time of a hung store, not after every one of its
// round trips has run out its socket timeout. It refuses at once when the
// store does not answer now. A store that answers but is lost or drifted
// may be walked: that walk is how an operator learns what it lost.
func (g *guard) whileReachable(ctx context.Context, fn func(context.Context) error) error {
	g.mu.Lock()
	up, state := g.reachable, storeState(g.state.Load())
	g.mu.Unlock()
	if state == storeUnreachable {
		return &storeDown{state: state}
	}
	ctx, cancel := context.WithCancelCause(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		select {
		case <-up:
			cancel(&storeDown{state: storeState(g.state.Load())})
		case <-ctx.Done():
		}
	})
	err := fn(ctx)
	cancel(nil)
	wg.Wait()
	var down *storeDown
	if err != nil && errors.As(context.Cause(ctx), &down) {
		return down
	}
	return err
}

// storeDown is a call that needs a store that answers and did not have one.
type storeDown struct{ state storeState }

func (e *storeDown) Error() string {
	return fmt.Sprintf("%v: the store is not serving (%v): try again once health is SERVING", consent.ErrUnavailable, e.state)
}

func (e *storeDown) Is(target error) bool { return target == consent.ErrUnavailable }

// storeRefusal is a call refused by the gate.
type storeRefusal struct {
	state storeState
	cause error
}

func (e *storeRefusal) Error() string {
	if e.state == storeLost {
		return fmt.Sprintf("%v: the store was wiped or replaced, or lost data (%v); consentd serves nothing from it until it is restarted: %s",
			consent.ErrUnavailable, e.cause, lostRecovery)
	}
	return fmt.Sprintf("%v: the store's settings are unsafe (%v); consentd refuses reads and writes until they are restored", consent.ErrUnavailable, e.cause)
}

func (e *storeRefusal) Is(target error) bool { return target == consent.ErrUnavailable }

func (e *storeRefusal) Unwrap() error { return e.cause }

// gatedRecords is the cache behind the guard's gate: while the store is lost
// or its settings unsafe, Check, BatchCheck, FilterAudience, GetContact and
// unsubscribe links are refused before the cache is touched.
type gatedRecords struct {
	g       *guard
	records server.Records
}

func (r gatedRecords) Get(ctx context.Context, key consent.Key, c consent.Consistency) (*consent.Record, error) {
	if err := r.g.refused(); err != nil {
		return nil, err
	}
	return r.records.Get(ctx, key, c)
}

func (r gatedRecords) GetMany(ctx context.Context, keys []consent.Key, c consent.Consistency, out []*consent.Record) error {
	if err := r.g.refused(); err != nil {
		return err
	}
	return r.records.GetMany(ctx, keys, c, out)
}

// gatedStore is the store behind the same gate: every write, and the
// history, which a lost store no longer has.
type gatedStore struct {
	g     *guard
	store server.Store
}

func (s gatedStore) Apply(ctx context.Context, w consent.Write) (consent.ConsistencyToken, error) {
	if err := s.g.refused(); err != nil {
		return consent.ConsistencyToken{}, err
	}
	return s.store.Apply(ctx, w)
}

func (s gatedStore) ApplyBatch(ctx context.Context, ws []consent.Write) ([]consent.ConsistencyToken, []error, error) {
	if err := s.g.refused(); err != nil {
		return nil, nil, err
	}
	return s.store.ApplyBatch(ctx, ws)
}

func (s gatedStore) Events(ctx context.Context, key consent.Key, after consent.ConsistencyToken, limit int) ([]consent.Event, bool, error) {
	if err := s.g.refused(); err != nil {
		return nil, false, err
	}
	return s.store.Events(ctx, key, after, limit)
}

// VerifyHistory is not gated: it only reads, and a store found lost or
// drifted is exactly when the operator needs it to say what is missing or
// altered. It needs a store that answers.
func (s gatedStore) VerifyHistory(ctx context.Context) ([]consent.PartitionHistory, error) {
	var parts []consent.PartitionHistory
	err := s.g.whileReachable(ctx, func(ctx context.Context) (err error) {
		parts, err = s.store.VerifyHistory(ctx)
		return err
	})
	return parts, err
}

// StoreState and StoreFaults are what the store metrics read
// (metrics.StoreHealth).
func (g *guard) StoreState() int { return int(g.state.Load()) }

func (g *guard) StoreFaults(i int) uint64 { return g.faults[i].Load() }
