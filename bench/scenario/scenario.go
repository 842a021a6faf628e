// Package scenario is consentbench's benchmark engine: it loads a synthetic
// population into each store, starts consentd processes from a binary it
// builds, runs the scenarios in order (Check warm and cold against the
// floor, the maximum-rate search, direct Redis, propagation, audience, and
// Check with and without entitlements) and returns their rows. The command
// keeps the flags and writes the results; bench holds the load harness the
// scenarios drive. See docs/benchmarks.md.
package scenario

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/consentd/consentd/bench"
)

// Config is what a run measures, and how.
type Config struct {
	Population   Population
	Rates        []float64 // offered request rates, per second
	Duration     time.Duration
	Warmup       time.Duration
	Pause        time.Duration // idle time after each sidecar stops
	Workers      int
	Transports   []string // "tcp", "unix"
	Stores       []string // "embedded", "redis"
	Procs        []int    // GOMAXPROCS for the CPU-budget comparison; 0 is the default
	Search       bench.Search
	ProbeTime    time.Duration
	Zipf         float64 // 0 draws contacts uniformly
	CacheBytes   int64
	RedisURL     string // a scratch Redis for the Redis scenarios; "" to start one
	StartRedis   bool   // without RedisURL, start a redis-server from PATH
	Propagations int
	CPUProfile   string // a directory for the sidecars' CPU profiles; "" for none
	MemProfile   string // a directory for the sidecars' heap profiles; "" for none
	// Groups are the scenario groups to run: "store" (every scenario on
	// every store) and "entitlement" (warm Check with and without
	// entitlements, on the embedded store).
	Groups            []string
	EntitlementRate   float64
	EntitlementRounds int
}

// runs reports whether the scenario group name was selected.
func (c Config) runs(name string) bool { return slices.Contains(c.Groups, name) }

// Run builds consentd, runs the scenarios c selects and returns their rows,
// with ratios and budgets set, and notes on what it skipped (also said on
// stderr, where the progress goes).
func Run(ctx context.Context, c Config, stderr io.Writer) ([]bench.Row, []string, error) {
	dir, cleanup, err := tempDir()
	if err != nil {
		return nil, nil, err
	}
	defer cleanup()
	for _, d := range []string{c.CPUProfile, c.MemProfile} {
		if d != "" {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return nil, nil, err
			}
		}
	}
	r := &runner{Config: c, dir: dir, stderr: stderr}
	r.names = make([]string, c.Population.Contacts)
	for i := range r.names {
		r.names[i] = contactName(i)
	}
	var pick bench.Picker
	if c.Zipf > 0 {
		pick, err = bench.NewZipf(len(r.names), c.Zipf)
	} else {
		pick, err = bench.NewUniform(len(r.names))
	}
	if err != nil {
		return nil, nil, err
	}
	r.contacts = bench.NewContacts(r.names, pick, 1)

	if r.consentd, err = BuildConsentd(ctx, dir); err != nil {
		return nil, nil, err
	}
	var notes []string
	if c.runs("entitlement") && !slices.Contains(c.Stores, "embedded") {
		note := "entitlement scenarios skipped: they run on the embedded store, which -stores leaves out"
		fmt.Fprintln(stderr, note)
		notes = append(notes, note)
	}
	for _, kind := range c.Stores {
		entitlement := c.runs("entitlement") && kind == "embedded"
		if !c.runs("store") && !entitlement {
			continue // nothing selected runs on this store: do not load it
		}
		st, err := r.prepare(ctx, kind)
		if errors.Is(err, errNoRedis) {
			note := "Redis scenarios skipped: " + err.Error()
			fmt.Fprintln(stderr, note)
			notes = append(notes, note)
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		if c.runs("store") {
			err = r.storeScenarios(ctx, st)
		}
		if err == nil && entitlement {
			err = r.entitlement(ctx, st)
		}
		st.close()
		if err != nil {
			return nil, nil, err
		}
	}
	bench.SetRatios(r.rows)
	setBudgets(r.rows)
	return r.rows, notes, nil
}
