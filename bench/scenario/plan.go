package scenario

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/consentd/consentd/bench"
	"github.com/consentd/consentd/client"
	"github.com/consentd/consentd/internal/redisproc"
)

// errNoRedis says the Redis scenarios have no Redis to run on.
var errNoRedis = errors.New("no Redis")

// runner runs the scenarios in order and collects their rows. Scenarios run
// one sidecar at a time, each started fresh and followed by a pause, so one
// scenario's aftermath never lands in the next one's numbers; the audience
// passes, the heaviest, run last.
type runner struct {
	Config
	dir      string
	consentd string // the binary the sidecars run
	stderr   io.Writer
	rows     []bench.Row
	contacts *bench.Contacts // the population's contacts, as the load picks them
	names    []string        // the population's contacts, in order
}

// storeEnv is a loaded store consentd can be started on.
type storeEnv struct {
	kind   string   // "embedded" or "redis"
	data   string   // the embedded store's directory; "" for Redis
	args   []string // consentd's store flags
	direct bench.Op // the sender's own read of the record, without consentd (Redis only)
	close  func()
}

// prepare loads the population into a store of kind.
func (r *runner) prepare(ctx context.Context, kind string) (*storeEnv, error) {
	start := time.Now()
	progress := func(done int) {
		fmt.Fprintf(r.stderr, "\rloading population into %s: %d/%d contacts (%.0f/s)", kind, done, r.Population.Contacts, float64(done)/time.Since(start).Seconds())
	}
	if kind == "embedded" {
		data := filepath.Join(r.dir, "embedded")
		err := loadEmbedded(ctx, data, r.Population, progress)
		fmt.Fprintln(r.stderr)
		if err != nil {
			return nil, fmt.Errorf("loading population: %w", err)
		}
		return &storeEnv{kind: kind, data: data, args: []string{"--data-dir", data}, close: func() {}}, nil
	}
	env := &storeEnv{kind: kind, close: func() {}}
	url := r.RedisURL
	if url == "" {
		if !r.StartRedis {
			return nil, fmt.Errorf("%w: no --redis given and --start-redis=false", errNoRedis)
		}
		if _, err := exec.LookPath("redis-server"); err != nil {
			return nil, fmt.Errorf("%w: no redis-server on PATH (install Debian's redis-server, or pass --redis URL)", errNoRedis)
		}
		dir := filepath.Join(r.dir, "redis")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		srv, err := redisproc.Start(dir, redisproc.Options{})
		if err != nil {
			return nil, err
		}
		env.close = func() { srv.Kill() }
		url = "redis://" + srv.Addr() + "/0"
	}
	rdb, err := redisClient(url)
	if err != nil {
		env.close()
		return nil, fmt.Errorf("-redis: %w", err)
	}
	closeRedis := env.close
	env.close = func() { rdb.Close(); closeRedis() }
	secret := filepath.Join(r.dir, "secret")
	const partitions = 16
	if r.RedisURL == "" {
		// Our own Redis: load without an fsync per write, then measure with
		// the settings consentd is deployed with.
		err = rdb.ConfigSet(ctx, "appendfsync", "no").Err()
	}
	if err == nil {
		err = loadRedis(ctx, rdb, secret, partitions, r.RedisURL == "", r.Population, progress)
	}
	if err == nil && r.RedisURL == "" {
		err = rdb.ConfigSet(ctx, "appendfsync", "always").Err()
	}
	fmt.Fprintln(r.stderr)
	if err != nil {
		env.close()
		return nil, fmt.Errorf("loading population: %w", err)
	}
	keys, _, err := keyer(secret)
	if err != nil {
		env.close()
		return nil, err
	}
	env.args = []string{"--redis", url, "--secret-file", secret, "--partitions", strconv.Itoa(partitions)}
	env.direct = func(ctx context.Context, _ int) error { return directRead(ctx, rdb, keys, partitions, r.contacts) }
	return env, nil
}

// feedSettle is comfortably more than consentd's feed takes to fence every
// partition after it starts (--lease/8 per round, 2s/8 by default).
const feedSettle = time.Second

// setup is one sidecar's configuration.
type setup struct {
	transport string
	warm      bool // the cache on and filled with the whole population first
	procs     int  // GOMAXPROCS; 0 for Go's default
	// label, when set, tells this setup's sidecar from others with the same
	// settings in its name (its profiles' files).
	label string
	args  []string // more consentd flags (--tokens, --policy)
	token string   // the load's bearer token; "" for none
}

func (s setup) cacheName() string {
	if s.warm {
		return "warm"
	}
	return "cold"
}

// session is one running sidecar and the rows measured on it.
type session struct {
	setup
	store  *storeEnv
	client *client.Client
	rows   []bench.Row
	warmed int // lookups the cache fill made, all misses
}

func (s *session) add(row bench.Row) {
	row.Transport, row.Store, row.Procs = s.transport, s.store.kind, s.procs
	s.rows = append(s.rows, row)
}

// storeScenarios runs every scenario on st.
func (r *runner) storeScenarios(ctx context.Context, st *storeEnv) error {
	first := r.Procs[0]
	for _, tr := range r.Transports {
		// Check with a warm cache, under each core budget (the CPU budget),
		// with the highest rate that keeps p99 under the limit.
		for _, procs := range r.Procs {
			if st.kind == "redis" && procs != first {
				continue // the budget is the sidecar's own work: measured on the embedded store
			}
			err := r.block(ctx, st, setup{transport: tr, warm: true, procs: procs}, func(s *session) error {
				if err := r.ladder(ctx, s, "check-warm", "floor-warm", bench.CheckOp(s.client, r.contacts, "email_marketing")); err != nil {
					return err
				}
				if st.kind == "redis" {
					return nil
				}
				return r.maxRate(ctx, s)
			})
			if err != nil {
				return err
			}
		}
		// Check with the cache off: every answer read from the store.
		err := r.block(ctx, st, setup{transport: tr, warm: false, procs: first}, func(s *session) error {
			return r.ladder(ctx, s, "check-cold", "floor-cold", bench.CheckOp(s.client, r.contacts, "email_marketing"))
		})
		if err != nil {
			return err
		}
	}
	if st.direct != nil {
		for _, rate := range r.Rates {
			res, err := r.measure(ctx, fmt.Sprintf("direct-redis@%g/s", rate), rate, r.Duration, st.direct)
			if err != nil {
				return err
			}
			r.rows = append(r.rows, bench.Row{Scenario: fmt.Sprintf("direct-redis@%g/s", rate), Transport: "tcp", Store: st.kind, Result: res})
		}
		if err := r.propagation(ctx, st); err != nil {
			return err
		}
	}
	for _, tr := range r.Transports {
		for _, warm := range []bool{true, false} {
			if err := r.block(ctx, st, setup{transport: tr, warm: warm, procs: first}, r.audience); err != nil {
				return err
			}
		}
	}
	return nil
}

// block starts a fresh sidecar for su on st, runs fn against it, stops it,
// keeps fn's rows (with the cache hit ratio of the checks on warm ones) and
// pauses.
func (r *runner) block(ctx context.Context, st *storeEnv, su setup, fn func(*session) error) error {
	cache := "0"
	if su.warm {
		cache = strconv.FormatInt(r.CacheBytes, 10)
	}
	var env []string
	if su.procs > 0 {
		env = append(env, "GOMAXPROCS="+strconv.Itoa(su.procs))
	}
	name := fmt.Sprintf("%s-%s-%s-procs%d", st.kind, su.transport, su.cacheName(), su.procs)
	if su.label != "" {
		name += "-" + su.label
	}
	if r.CPUProfile != "" {
		env = append(env, cpuProfileEnv+"="+uniquePath(r.CPUProfile, name, ".cpu.pprof"))
	}
	if r.MemProfile != "" {
		env = append(env, memProfileEnv+"="+uniquePath(r.MemProfile, name, ".heap.pprof"))
	}
	listen := "127.0.0.1:0"
	if su.transport == "unix" {
		listen = "unix:" + filepath.Join(r.dir, "consentd.sock")
	}
	sc, err := StartSidecar(ctx, r.consentd, r.stderr, env, slices.Concat(st.args, []string{"--listen", listen, "--cache-bytes", cache}, su.args)...)
	if err != nil {
		return err
	}
	target := sc.addr
	if su.transport == "unix" {
		target = listen
	}
	cl, err := client.New(target, su.clientOptions()...)
	if err != nil {
		sc.stop()
		return err
	}
	s := &session{setup: su, store: st, client: cl}
	if st.kind == "redis" {
		// Until the change feed has fenced a partition, consentd reads it
		// from Redis and caches nothing (the lease): give it the time.
		time.Sleep(feedSettle)
	}
	if su.warm {
		fmt.Fprintf(r.stderr, "filling the cache with the whole population (%s, %s)...\n", st.kind, su.transport)
		_, _, err = bench.FilterThroughput(ctx, cl, "ad_retargeting", r.names)
		s.warmed = len(r.names)
	}
	if err == nil {
		err = fn(s)
	}
	cl.Close()
	stats := sc.stop()
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	// The fill's lookups were all misses when the cache was in use; on Redis
	// some of them may have bypassed it (before the first fence), so never
	// count fewer lookups than hits.
	if lookups := max(int64(stats.hits+stats.misses)-int64(s.warmed), int64(stats.hits)); su.warm && stats.ok && lookups > 0 {
		ratio := float64(stats.hits) / float64(lookups)
		for i := range s.rows {
			if strings.HasPrefix(s.rows[i].Scenario, "check-") && strings.Contains(s.rows[i].Scenario, "@") && !s.rows[i].Probe {
				extra(&s.rows[i])["hit_ratio"] = ratio
			}
		}
	}
	r.rows = append(r.rows, s.rows...)
	r.rest()
	return nil
}

// rest lets the machine settle between sidecars: the harness's own garbage
// collected now rather than during the next measurement, and time for the
// stopped process's memory and files to be released.
func (r *runner) rest() {
	runtime.GC()
	time.Sleep(r.Pause)
}

// measure runs op at rate for d after the warmup, saying so on stderr.
func (r *runner) measure(ctx context.Context, what string, rate float64, d time.Duration, op bench.Op) (*bench.Result, error) {
	fmt.Fprintf(r.stderr, "running %s for %v...\n", what, r.Warmup+d)
	res, err := bench.Run(ctx, bench.Load{Rate: rate, Duration: d, Warmup: r.Warmup, Workers: r.Workers}, op)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return res, nil
}

// ladder measures op and the floor at every rate, each judged against the
// floor at the same rate.
func (r *runner) ladder(ctx context.Context, s *session, name, floor string, op bench.Op) error {
	for _, rate := range r.Rates {
		at := fmt.Sprintf("@%g/s", rate)
		for _, sc := range []struct {
			name, baseline string
			op             bench.Op
		}{{name + at, floor + at, op}, {floor + at, "", bench.FloorOp(s.client)}} {
			res, err := r.measure(ctx, s.describe(sc.name), rate, r.Duration, sc.op)
			if err != nil {
				return err
			}
			s.add(bench.Row{Scenario: sc.name, Result: res, Baseline: sc.baseline})
		}
	}
	return nil
}

func (s *session) describe(name string) string {
	procs := "default GOMAXPROCS"
	if s.procs > 0 {
		procs = fmt.Sprintf("GOMAXPROCS=%d", s.procs)
	}
	return fmt.Sprintf("%s over %s on %s (%s)", name, s.transport, s.store.kind, procs)
}

// maxRate searches the highest rate at which warm Check, and the floor, keep
// p99 under the limit. Every probe is kept for the latency vs rate plot.
func (r *runner) maxRate(ctx context.Context, s *session) error {
	for _, sc := range []struct {
		name string
		op   bench.Op
	}{{"check-warm", bench.CheckOp(s.client, r.contacts, "email_marketing")}, {"floor-warm", bench.FloorOp(s.client)}} {
		best, probes, err := bench.MaxRate(ctx, r.Search, func(ctx context.Context, rate float64) (*bench.Result, error) {
			return r.measure(ctx, s.describe(fmt.Sprintf("%s-probe@%.0f/s", sc.name, rate)), rate, r.ProbeTime, sc.op)
		})
		if err != nil {
			return err
		}
		for _, p := range probes {
			s.add(bench.Row{Scenario: fmt.Sprintf("%s-probe@%.0f/s", sc.name, p.Offered), Result: p, Probe: true})
		}
		row := bench.Row{Scenario: sc.name + "-max", Result: best, Extra: map[string]float64{"max_rps": 0}}
		if best != nil {
			row.Extra["max_rps"] = best.Offered
		}
		s.add(row)
	}
	return nil
}

// audience passes the whole population through FilterAudience and through
// BatchCheck.
func (r *runner) audience(s *session) error {
	ctx := context.Background()
	name := "filter-audience-" + s.cacheName()
	fmt.Fprintf(r.stderr, "running %s (%d contacts)...\n", s.describe(name), len(r.names))
	res, perSec, err := bench.FilterThroughput(ctx, s.client, "ad_retargeting", r.names)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	s.add(bench.Row{Scenario: name, Result: res, Extra: map[string]float64{"contacts_per_s": perSec}})
	name = "batch-check-" + s.cacheName()
	fmt.Fprintf(r.stderr, "running %s (%d contacts)...\n", s.describe(name), len(r.names))
	res, perSec, err = bench.BatchThroughput(ctx, s.client, "ad_retargeting", r.names, 1000, 4)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	s.add(bench.Row{Scenario: name, Result: res, Extra: map[string]float64{"contacts_per_s": perSec}})
	return nil
}

// propagation starts two sidecars on the Redis store and times withdrawals
// from A's acknowledgement to B's first DENY.
func (r *runner) propagation(ctx context.Context, st *storeEnv) error {
	var cls []*client.Client
	for range 2 {
		sc, err := StartSidecar(ctx, r.consentd, r.stderr, nil, append(st.args, "--listen", "127.0.0.1:0")...)
		if err != nil {
			return err
		}
		defer sc.stop()
		cl, err := client.New(sc.addr)
		if err != nil {
			return err
		}
		defer cl.Close()
		cls = append(cls, cl)
	}
	contacts := make([]string, r.Propagations)
	for i := range contacts {
		contacts[i] = fmt.Sprintf("propagation%d@bench.example", i)
	}
	fmt.Fprintf(r.stderr, "running propagation: %d withdrawals on sidecar A, first DENY on sidecar B...\n", len(contacts))
	res, err := bench.Propagation(ctx, cls[0], cls[1], contacts, "email_marketing", 5*time.Second)
	if err != nil {
		return fmt.Errorf("propagation: %w", err)
	}
	r.rows = append(r.rows, bench.Row{Scenario: "propagation", Transport: "tcp", Store: st.kind, Result: res})
	r.rest()
	return nil
}

// setBudgets adds what the targets need beyond a ratio: for Check
// cold on Redis, the budget floor p99 + direct-Redis p99 + 100 µs at the same
// rate; for the maximum rates, Check's as a share of the floor's; for Check
// with entitlements, its p50 and p99 as shares of Check's without identity
// at the same rate.
func setBudgets(rows []bench.Row) {
	find := func(like bench.Row, scenario string) *bench.Row {
		for i := range rows {
			if o := &rows[i]; o.Scenario == scenario && o.Store == like.Store && o.Procs == like.Procs &&
				(o.Transport == like.Transport || strings.HasPrefix(scenario, "direct-")) {
				return o
			}
		}
		return nil
	}
	for i := range rows {
		row := &rows[i]
		name, at, _ := strings.Cut(row.Scenario, "@")
		switch {
		case name == "check-cold" && row.Store == "redis":
			floor, direct := find(*row, "floor-cold@"+at), find(*row, "direct-redis@"+at)
			if floor != nil && direct != nil && row.Result != nil && floor.Result != nil && direct.Result != nil {
				budget := floor.Result.P99() + direct.Result.P99() + 100*time.Microsecond
				extra(row)["budget_p99_us"] = float64(budget) / float64(time.Microsecond)
			}
		case name == entitledCheck:
			plain := find(*row, plainCheck+"@"+at)
			if plain == nil || row.Result == nil || plain.Result == nil || plain.Result.P50() <= 0 || plain.Result.P99() <= 0 {
				break
			}
			extra(row)["p50_vs_plain"] = float64(row.Result.P50()) / float64(plain.Result.P50())
			extra(row)["p99_vs_plain"] = float64(row.Result.P99()) / float64(plain.Result.P99())
		case name == "check-warm-max":
			if floor := find(*row, "floor-warm-max"); floor != nil && floor.Extra["max_rps"] > 0 {
				extra(row)["max_rps_vs_floor"] = row.Extra["max_rps"] / floor.Extra["max_rps"]
			}
		}
	}
}

func extra(r *bench.Row) map[string]float64 {
	if r.Extra == nil {
		r.Extra = map[string]float64{}
	}
	return r.Extra
}
