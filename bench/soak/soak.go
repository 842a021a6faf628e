package soak

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/consentd/consentd/bench"
	"github.com/consentd/consentd/client"
	"github.com/consentd/consentd/consent"
)

// Config is a soak run.
type Config struct {
	Duration        time.Duration // how long the load runs; faults start only while one fits
	Rate            float64       // Checks per second
	WriteRate       float64       // writes per second
	StreamRate      float64       // FilterAudience streams per second
	Contacts        int           // synthetic contacts the load spreads over
	Seed            uint64        // the load's choices
	Faults          []string      // the schedule's cycle (AllFaults)
	FaultInterval   time.Duration // quiet load between a recovery and the next fault
	FaultHold       time.Duration // how long a fault lasts
	NoticeTimeout   time.Duration // how long the operator waits for NOT_SERVING after a FLUSHALL, or for SERVING after a drift
	RecoveryTimeout time.Duration // how long a fault's recovery may take before the run fails
	RequestTimeout  time.Duration // each request's deadline
	Stall           time.Duration // a Check slower than this fails the run
	Lease           time.Duration // consentd's --lease, and the oracle's
	RedisInit       bool          // consentd has --redis-init: start the first sidecar (and re-init) with it
	Dir             string        // scratch directory (Redis' data, the secret); "" for a temporary one
}

// DefaultConfig is a 10-minute run of every fault.
func DefaultConfig() Config {
	return Config{
		Duration: 10 * time.Minute, Rate: 200, WriteRate: 50, StreamRate: 1, Contacts: 1000, Seed: 1,
		Faults: AllFaults(), FaultInterval: 3 * time.Second, FaultHold: 3 * time.Second,
		NoticeTimeout: 10 * time.Second, RecoveryTimeout: 30 * time.Second, RequestTimeout: 15 * time.Second, Stall: 3 * time.Second,
		Lease: 2 * time.Second, RedisInit: true,
	}
}

// Validate refuses a Config that cannot run.
func (c Config) Validate() error {
	switch {
	case c.Duration <= 0:
		return errors.New("duration: must be positive")
	case !(c.Rate > 0) || !(c.WriteRate > 0) || !(c.StreamRate > 0):
		return errors.New("rate, write-rate, stream-rate: must be positive")
	case c.Contacts <= 0:
		return errors.New("contacts: must be positive")
	case len(c.Faults) == 0:
		return errors.New("faults: name at least one")
	case c.FaultInterval <= 0 || c.FaultHold <= 0 || c.NoticeTimeout <= 0 || c.RecoveryTimeout <= 0 || c.RequestTimeout <= 0 || c.Lease <= 0 || c.Stall <= 0:
		return errors.New("fault-interval, fault-hold, notice-timeout, recovery-timeout, request-timeout, lease, stall: must be positive")
	}
	for _, f := range c.Faults {
		if !slices.Contains(AllFaults(), f) {
			return fmt.Errorf("faults: %q is not one of %v", f, AllFaults())
		}
	}
	return nil
}

// Run runs the soak: it starts Redis and the sidecars, offers the load while
// the schedule injects faults, audits the store after each recovery and at
// the end, stops everything it started and returns the report. progress
// gets a line per fault. An error means the soak itself could not run; a
// run that found violations returns a Report whose Failed is true.
func Run(ctx context.Context, cfg Config, launch Launcher, progress io.Writer) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	dir := cfg.Dir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "consentd-soak-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	e, err := newEnv(ctx, dir, cfg, launch)
	if err != nil {
		return nil, err
	}
	defer e.close()
	// Until the change feed has fenced every partition, a sidecar caches
	// nothing: let the load meet warm caches from the start.
	sleep(ctx, cfg.Lease)

	var purposes []string
	for _, p := range consent.DefaultPurposes() {
		purposes = append(purposes, p.Name)
	}
	rec := &Recorder{}
	clients := e.clients()
	l := newLoad(cfg, purposes, clients, rec)
	t0 := time.Now()
	fmt.Fprintf(progress, "soak: %v of load (%g Checks/s, %g writes/s, %g streams/s on %d contacts), faults %v every %v\n",
		cfg.Duration, cfg.Rate, cfg.WriteRate, cfg.StreamRate, cfg.Contacts, cfg.Faults, cfg.FaultInterval+cfg.FaultHold)

	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	var (
		wg      sync.WaitGroup
		streams *bench.Result
		loadErr error
	)
	wg.Go(func() { streams, loadErr = l.run(loadCtx) })

	var faults []*fault
	var audits []audit
	deadline := t0.Add(cfg.Duration)
	for n := 0; ; n++ {
		if !sleep(ctx, cfg.FaultInterval) || time.Until(deadline) < cfg.FaultHold+cfg.FaultInterval {
			break
		}
		f := e.inject(ctx, cfg.Faults[n%len(cfg.Faults)], n/len(cfg.Faults), cfg, rec)
		if f.Recovered.IsZero() {
			f.Recovered = time.Now()
		}
		faults = append(faults, f)
		fmt.Fprintf(progress, "soak: %s\n", f.summary(t0))
		if f.Failed != "" || ctx.Err() != nil {
			stopLoad() // the sidecars cannot be trusted to come back: end here
			break
		}
		a := e.audit(ctx, l, n%len(e.sidecars))
		audits = append(audits, a)
		if a.unread > 0 {
			fmt.Fprintf(progress, "soak: audit after %s: %d of %d contacts unread\n", f.Kind, a.unread, cfg.Contacts)
		}
	}
	wg.Wait()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if loadErr != nil {
		return nil, loadErr
	}
	final := e.audit(context.Background(), l, -1)
	fmt.Fprintf(progress, "soak: final audit: %d of %d contacts read\n", cfg.Contacts-final.unread, cfg.Contacts)
	calls, skips := l.callsAndSkips()
	return buildReport(cfg, t0, time.Now(), rec.Snapshot(), calls, skips, faults, e.healthLogs(), audits, final, streams), nil
}

func (e *env) clients() []*client.Client {
	out := make([]*client.Client, len(e.sidecars))
	for i, s := range e.sidecars {
		out[i] = s.client
	}
	return out
}

func (e *env) healthLogs() map[string][]healthEvent {
	out := map[string][]healthEvent{}
	for _, s := range e.sidecars {
		out[s.name] = s.history()
	}
	return out
}
