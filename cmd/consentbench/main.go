// Command consentbench measures consentd as a sender sees it: open-loop load
// at fixed rates through the real client over TCP loopback and a Unix socket,
// full latency distributions measured from each request's intended send
// time, each scenario next to its floor (the health check on the same
// server, transport and core count) in the same run. It builds consentd and
// starts the consentd processes it needs from that binary, a redis-server
// when one is installed, and loads a synthetic population first. See docs/benchmarks.md.
//
// `consentbench soak` runs the fault-injection soak instead (package
// bench/soak; docs/reliability.md).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/consentd/consentd/bench"
	"github.com/consentd/consentd/bench/scenario"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// config is the command line: the run scenario.Run makes, and where its
// results go.
type config struct {
	scenario.Config
	out string // directory for results.md, results.json and the plots
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	c := config{Config: scenario.Config{Population: scenario.Population{Seed: 1}}}
	fs := flag.NewFlagSet("consentbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "usage: consentbench [flags]       the benchmarks (docs/benchmarks.md)\n"+
			"       consentbench soak [flags]  the fault-injection soak (consentbench soak -h)\n\n")
		fs.PrintDefaults()
	}
	fs.IntVar(&c.Population.Contacts, "contacts", 1000000, "synthetic contacts (x 4 purposes)")
	fs.Float64Var(&c.Population.Granted, "granted", 0.3, "share of (contact, purpose) pairs granted")
	fs.Float64Var(&c.Population.Withdrawn, "withdrawn", 0.1, "share of grants later withdrawn")
	fs.Float64Var(&c.Population.Stale, "stale", 0.1, "share of grants older than the re-confirmation window")
	rates := fs.String("rates", "1000,2000,5000,10000", "offered request rates (per second), comma-separated")
	fs.DurationVar(&c.Duration, "duration", 10*time.Second, "measured time per scenario and rate")
	fs.DurationVar(&c.Warmup, "warmup", 2*time.Second, "unmeasured load before each measurement")
	fs.DurationVar(&c.Pause, "pause", 3*time.Second, "idle time after each sidecar stops, so one scenario's aftermath (GC, disk writeback) does not land in the next")
	fs.IntVar(&c.Workers, "workers", 256, "most requests in flight at once")
	transports := fs.String("transports", "tcp,unix", "transports to measure: tcp, unix")
	stores := fs.String("stores", "embedded,redis", "stores to run consentd on: embedded, redis (redis scenarios need --redis, or a redis-server on PATH)")
	procs := fs.String("gomaxprocs", "0,1", "GOMAXPROCS values for the sidecar CPU budget (0: Go's default, all cores here); the first is used for every other scenario")
	fs.DurationVar(&c.Search.Limit, "max-p99", time.Millisecond, "the p99 the maximum-throughput search holds to")
	fs.IntVar(&c.Search.Steps, "max-steps", 3, "bisection steps of the maximum-throughput search")
	fs.DurationVar(&c.ProbeTime, "probe-duration", 5*time.Second, "measured time per probe of the maximum-throughput search")
	fs.Float64Var(&c.Zipf, "zipf", bench.DefaultZipfExponent, "Zipf exponent for choosing contacts; 0 draws uniformly")
	fs.StringVar(&c.out, "out", "bench-out", "directory for results.md, results.json and the plots")
	fs.Int64Var(&c.CacheBytes, "cache-bytes", 1<<30, "consentd's --cache-bytes for warm scenarios (cold ones run with 0)")
	fs.StringVar(&c.RedisURL, "redis", "", "run the Redis scenarios on this Redis (a scratch one: the population is written into it)")
	fs.BoolVar(&c.StartRedis, "start-redis", true, "without --redis, start a redis-server from PATH for the Redis scenarios (they are skipped, and the report says so, when there is none)")
	fs.IntVar(&c.Propagations, "propagations", 1000, "withdrawals timed from sidecar A's acknowledgement to sidecar B's first DENY")
	fs.StringVar(&c.CPUProfile, "cpuprofile", "", "write a CPU profile of every consentd the run starts into this directory, one file per sidecar")
	fs.StringVar(&c.MemProfile, "memprofile", "", "write a heap profile of every consentd the run starts, as it stops, into this directory")
	scenarios := fs.String("scenarios", "store,entitlement", "scenario groups to run: store (Check warm and cold, maximum rate, direct Redis, propagation, audience on every store), entitlement (warm Check over TCP on the embedded store without caller identity and with --tokens and --policy)")
	fs.Float64Var(&c.EntitlementRate, "entitlement-rate", 2000, "offered rate (per second) of the entitlement scenarios")
	fs.IntVar(&c.EntitlementRounds, "entitlement-rounds", 10, "turns the entitlement scenarios take, each measuring every scenario for -duration / rounds")
	smoke := fs.Bool("smoke", false, "a short run of every scenario on a tiny population (for CI: checks the harness works, judges nothing)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *smoke {
		c.Population.Contacts, *rates, c.Duration, c.Warmup, c.Pause = 2000, "200", 500*time.Millisecond, 100*time.Millisecond, 0
		c.ProbeTime, c.Search.Steps, c.Propagations = 300*time.Millisecond, 0, 20
		c.EntitlementRate, c.EntitlementRounds = 200, 2
	}
	c.Search.Start, c.Search.Ceiling = 1000, 64000
	if *smoke {
		c.Search.Ceiling = 2000
	}
	for _, r := range strings.Split(*rates, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(r), 64)
		if err != nil || !(v > 0) {
			return c, fmt.Errorf("-rates: %q is not a positive rate", r)
		}
		c.Rates = append(c.Rates, v)
	}
	var err error
	if c.Transports, err = list("transports", *transports, "tcp", "unix"); err != nil {
		return c, err
	}
	if c.Stores, err = list("stores", *stores, "embedded", "redis"); err != nil {
		return c, err
	}
	if c.Groups, err = list("scenarios", *scenarios, "store", "entitlement"); err != nil {
		return c, err
	}
	for _, p := range strings.Split(*procs, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || v < 0 {
			return c, fmt.Errorf("-gomaxprocs: %q is not a core count (0 for the default)", p)
		}
		c.Procs = append(c.Procs, v)
	}
	switch {
	case c.Population.Contacts <= 0:
		return c, errors.New("-contacts: must be positive")
	case c.Workers <= 0:
		return c, errors.New("-workers: must be positive")
	case c.Propagations <= 0:
		return c, errors.New("-propagations: must be positive")
	case c.Search.Limit <= 0 || c.ProbeTime <= 0:
		return c, errors.New("-max-p99 and -probe-duration: must be positive")
	case !(c.EntitlementRate > 0):
		return c, errors.New("-entitlement-rate: must be positive")
	case c.EntitlementRounds <= 0 || c.Duration/time.Duration(c.EntitlementRounds) <= 0:
		return c, errors.New("-entitlement-rounds: must be positive, and at most -duration in nanoseconds")
	}
	return c, nil
}

// list parses a comma-separated flag whose values must be among allowed.
func list(name, v string, allowed ...string) ([]string, error) {
	var out []string
	for _, s := range strings.Split(v, ",") {
		s = strings.TrimSpace(s)
		ok := false
		for _, a := range allowed {
			ok = ok || s == a
		}
		if !ok {
			return nil, fmt.Errorf("-%s: %q is not one of %s", name, s, strings.Join(allowed, ", "))
		}
		out = append(out, s)
	}
	return out, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "soak" {
		return runSoak(ctx, args[1:], stdout, stderr)
	}
	c, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "consentbench:", err)
		return 2
	}
	if err := benchmark(ctx, c, stdout, stderr); err != nil {
		fmt.Fprintln(stderr, "consentbench:", err)
		return 1
	}
	return 0
}

// benchmark runs the scenarios and writes their results into c.out and, as
// a table, to stdout.
func benchmark(ctx context.Context, c config, stdout, stderr io.Writer) error {
	if err := os.MkdirAll(c.out, 0o755); err != nil {
		return err
	}
	rows, notes, err := scenario.Run(ctx, c.Config, stderr)
	if err != nil {
		return err
	}
	meta := map[string]string{
		"command":     "go run ./cmd/consentbench " + strings.Join(os.Args[1:], " "),
		"cpus":        strconv.Itoa(runtime.NumCPU()),
		"go":          runtime.Version(),
		"contacts":    strconv.Itoa(c.Population.Contacts),
		"zipf":        strconv.FormatFloat(c.Zipf, 'g', -1, 64),
		"cache_bytes": strconv.FormatInt(c.CacheBytes, 10),
		"duration":    c.Duration.String(),
		"warmup":      c.Warmup.String(),
		"when":        time.Now().UTC().Format(time.RFC3339),
		"notes":       strings.Join(notes, "; "),
		"scenarios":   strings.Join(c.Groups, ","),
	}
	files := map[string]func(io.Writer) error{
		"results.md":   func(w io.Writer) error { return writeReport(w, rows, notes) },
		"results.json": func(w io.Writer) error { return bench.WriteJSON(w, rows, meta) },
	}
	for name, draw := range scenario.Plots(rows) {
		files[name] = draw
	}
	for name, write := range files {
		if err := writeFile(filepath.Join(c.out, name), write); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	fmt.Fprintf(stderr, "wrote results.md, results.json and %d plots into %s\n", len(files)-2, c.out)
	return writeReport(stdout, rows, notes)
}

func writeReport(w io.Writer, rows []bench.Row, notes []string) error {
	for _, n := range notes {
		if _, err := fmt.Fprintf(w, "> %s\n\n", n); err != nil {
			return err
		}
	}
	return bench.WriteMarkdown(w, rows)
}

func writeFile(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
