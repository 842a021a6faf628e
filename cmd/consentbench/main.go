// Command consentbench measures consentd as a sender sees it: open-loop load
// at fixed rates through the real client over TCP loopback and a Unix socket,
// full latency distributions measured from each request's intended send
// time, each scenario next to its floor (the health check on the same
// server and transport) in the same run. It starts the consentd processes it
// needs from its own binary and loads a synthetic population first.
//
// This is the first part of the harness: the floor and Check (warm cache and
// cold) on the embedded store or Redis, on Redis the direct read a sender
// would do without consentd, and audience throughput through FilterAudience
// and BatchCheck. Propagation, maximum throughput, the CPU budget and plots
// come next.
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
	"github.com/consentd/consentd/client"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code, ok := runAsConsentd(ctx)
	if !ok {
		code = run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	}
	stop()
	os.Exit(code)
}

type config struct {
	pop        population
	rates      []float64
	duration   time.Duration
	warmup     time.Duration
	workers    int
	transports []string
	zipf       float64
	out        string
	gomaxprocs string
	contacts   *bench.Contacts // set once the population exists
	names      []string        // the population's contacts, in order
	redisURL   string
	startRedis bool
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	c := config{pop: population{Seed: 1}}
	fs := flag.NewFlagSet("consentbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&c.pop.Contacts, "contacts", 1000000, "synthetic contacts (x 4 purposes)")
	fs.Float64Var(&c.pop.Granted, "granted", 0.3, "share of (contact, purpose) pairs granted")
	fs.Float64Var(&c.pop.Withdrawn, "withdrawn", 0.1, "share of grants later withdrawn")
	fs.Float64Var(&c.pop.Stale, "stale", 0.1, "share of grants older than the re-confirmation window")
	rates := fs.String("rates", "1000,2000,5000,10000", "offered request rates (per second), comma-separated")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "measured time per scenario and rate")
	fs.DurationVar(&c.warmup, "warmup", 2*time.Second, "unmeasured load before each measurement")
	fs.IntVar(&c.workers, "workers", 256, "most requests in flight at once")
	transports := fs.String("transports", "tcp,unix", "transports to measure: tcp, unix")
	fs.Float64Var(&c.zipf, "zipf", bench.DefaultZipfExponent, "Zipf exponent for choosing contacts; 0 draws uniformly")
	fs.StringVar(&c.out, "out", "bench-out", "directory for results.md and results.json")
	fs.StringVar(&c.gomaxprocs, "gomaxprocs", "", "GOMAXPROCS for the consentd processes (default: all cores)")
	fs.StringVar(&c.redisURL, "redis", "", "measure consentd on this Redis (a scratch one: the population is written into it)")
	fs.BoolVar(&c.startRedis, "start-redis", false, "start a redis-server (from PATH) for the run and measure consentd on it")
	smoke := fs.Bool("smoke", false, "a seconds-long run on a tiny population (for CI: checks the harness works, judges nothing)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if *smoke {
		c.pop.Contacts, *rates, c.duration, c.warmup = 2000, "200", time.Second, 200*time.Millisecond
	}
	for _, r := range strings.Split(*rates, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(r), 64)
		if err != nil || v <= 0 {
			return c, fmt.Errorf("-rates: %q is not a positive rate", r)
		}
		c.rates = append(c.rates, v)
	}
	for _, t := range strings.Split(*transports, ",") {
		if t != "tcp" && t != "unix" {
			return c, fmt.Errorf("-transports: %q is not tcp or unix", t)
		}
		c.transports = append(c.transports, t)
	}
	if c.pop.Contacts <= 0 {
		return c, errors.New("-contacts: must be positive")
	}
	return c, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
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

func benchmark(ctx context.Context, c config, stdout, stderr io.Writer) error {
	dir, cleanup, err := tempDir()
	if err != nil {
		return err
	}
	defer cleanup()
	start := time.Now()
	progress := func(done int) {
		fmt.Fprintf(stderr, "\rloading population: %d/%d contacts (%.0f/s)", done, c.pop.Contacts, float64(done)/time.Since(start).Seconds())
	}
	storeArgs, kind := []string{"--data-dir", filepath.Join(dir, "data")}, "embedded"
	var direct bench.Op
	if c.redisURL != "" || c.startRedis {
		url := c.redisURL
		if c.startRedis {
			addr, stop, err := startRedis(ctx, dir)
			if err != nil {
				return err
			}
			defer stop()
			url = "redis://" + addr + "/0"
		}
		rdb, err := redisClient(url)
		if err != nil {
			return fmt.Errorf("-redis: %w", err)
		}
		defer rdb.Close()
		secret := filepath.Join(dir, "secret")
		const partitions = 16
		err = loadRedis(ctx, rdb, secret, partitions, c.pop, progress)
		fmt.Fprintln(stderr)
		if err != nil {
			return fmt.Errorf("loading population: %w", err)
		}
		keys, err := keyer(secret)
		if err != nil {
			return err
		}
		storeArgs = []string{"--redis", url, "--secret-file", secret, "--partitions", strconv.Itoa(partitions)}
		kind = "redis"
		direct = func(ctx context.Context, _ int) error { return directRead(ctx, rdb, keys, partitions, c.contacts) }
	} else {
		err := loadEmbedded(ctx, filepath.Join(dir, "data"), c.pop, progress)
		fmt.Fprintln(stderr)
		if err != nil {
			return fmt.Errorf("loading population: %w", err)
		}
	}
	names := make([]string, c.pop.Contacts)
	for i := range names {
		names[i] = contactName(i)
	}
	c.names = names
	var pick bench.Picker
	if c.zipf > 0 {
		pick, err = bench.NewZipf(len(names), c.zipf)
	} else {
		pick, err = bench.NewUniform(len(names))
	}
	if err != nil {
		return err
	}
	c.contacts = bench.NewContacts(names, pick, 1)

	var rows []bench.Row
	for _, transport := range c.transports {
		for _, cache := range []struct {
			name  string
			bytes string
		}{{"warm", "268435456"}, {"cold", "0"}} {
			r, err := c.sidecarRun(ctx, dir, storeArgs, transport, cache.name, cache.bytes, stderr)
			if err != nil {
				return err
			}
			rows = append(rows, r...)
		}
	}
	if direct != nil {
		for _, rate := range c.rates {
			name := fmt.Sprintf("direct-redis@%g/s", rate)
			fmt.Fprintf(stderr, "running %s for %v...\n", name, c.warmup+c.duration)
			res, err := bench.Run(ctx, bench.Load{Rate: rate, Duration: c.duration, Warmup: c.warmup, Workers: c.workers}, direct)
			if err != nil {
				return err
			}
			rows = append(rows, bench.Row{Scenario: name, Transport: "tcp", Result: res})
		}
	}
	bench.SetRatios(rows)
	if err := os.MkdirAll(c.out, 0o755); err != nil {
		return err
	}
	meta := map[string]string{
		"command":    "go run ./cmd/consentbench " + strings.Join(os.Args[1:], " "),
		"cpus":       strconv.Itoa(runtime.NumCPU()),
		"go":         runtime.Version(),
		"contacts":   strconv.Itoa(c.pop.Contacts),
		"zipf":       strconv.FormatFloat(c.zipf, 'g', -1, 64),
		"store":      kind,
		"gomaxprocs": c.gomaxprocs,
		"when":       time.Now().UTC().Format(time.RFC3339),
	}
	for name, write := range map[string]func(io.Writer) error{
		"results.md":   func(w io.Writer) error { return bench.WriteMarkdown(w, rows) },
		"results.json": func(w io.Writer) error { return bench.WriteJSON(w, rows, meta) },
	} {
		if err := writeFile(filepath.Join(c.out, name), write); err != nil {
			return err
		}
	}
	fmt.Fprintf(stderr, "wrote %s and %s\n", filepath.Join(c.out, "results.md"), filepath.Join(c.out, "results.json"))
	return bench.WriteMarkdown(stdout, rows)
}

// sidecarRun starts one consentd on the loaded data over transport, and
// measures the floor and Check at every rate.
func (c config) sidecarRun(ctx context.Context, dir string, storeArgs []string, transport, cacheName, cacheBytes string, stderr io.Writer) ([]bench.Row, error) {
	listen := "127.0.0.1:0"
	if transport == "unix" {
		listen = "unix:" + filepath.Join(dir, "consentd.sock")
	}
	var env []string
	if c.gomaxprocs != "" {
		env = append(env, "GOMAXPROCS="+c.gomaxprocs)
	}
	s, err := startSidecar(ctx, env, append(storeArgs, "--listen", listen, "--cache-bytes", cacheBytes)...)
	if err != nil {
		return nil, err
	}
	defer s.stop()
	target := s.addr
	if transport == "unix" {
		target = "unix:" + strings.TrimPrefix(listen, "unix:")
	}
	cl, err := client.New(target)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	var rows []bench.Row
	for _, rate := range c.rates {
		load := bench.Load{Rate: rate, Duration: c.duration, Warmup: c.warmup, Workers: c.workers}
		at := fmt.Sprintf("@%g/s", rate)
		scenarios := []struct {
			name, baseline string
			op             bench.Op
		}{
			{"check-" + cacheName + at, "floor-" + cacheName + at, bench.CheckOp(cl, c.contacts, "email_marketing")},
			{"floor-" + cacheName + at, "", bench.FloorOp(cl)},
		}
		for _, sc := range scenarios {
			fmt.Fprintf(stderr, "running %s over %s for %v...\n", sc.name, transport, c.warmup+c.duration)
			res, err := bench.Run(ctx, load, sc.op)
			if err != nil {
				return nil, fmt.Errorf("%s over %s: %w", sc.name, transport, err)
			}
			rows = append(rows, bench.Row{Scenario: sc.name, Transport: transport, Result: res, Baseline: sc.baseline})
		}
	}
	// Audience throughput: the whole population once through FilterAudience
	// and once through BatchCheck. Warm runs pass over the audience once
	// first, unmeasured, to fill the cache.
	if cacheName == "warm" {
		fmt.Fprintf(stderr, "warming the cache with the whole audience over %s...\n", transport)
		if _, _, err := bench.FilterThroughput(ctx, cl, "ad_retargeting", c.names); err != nil {
			return nil, err
		}
	}
	fmt.Fprintf(stderr, "running filter-audience-%s over %s (%d contacts)...\n", cacheName, transport, len(c.names))
	res, perSec, err := bench.FilterThroughput(ctx, cl, "ad_retargeting", c.names)
	if err != nil {
		return nil, fmt.Errorf("filter-audience over %s: %w", transport, err)
	}
	rows = append(rows, bench.Row{Scenario: "filter-audience-" + cacheName, Transport: transport, Result: res,
		Extra: map[string]float64{"contacts_per_s": perSec}})
	fmt.Fprintf(stderr, "running batch-check-%s over %s (%d contacts)...\n", cacheName, transport, len(c.names))
	res, perSec, err = bench.BatchThroughput(ctx, cl, "ad_retargeting", c.names, 1000, 4)
	if err != nil {
		return nil, fmt.Errorf("batch-check over %s: %w", transport, err)
	}
	rows = append(rows, bench.Row{Scenario: "batch-check-" + cacheName, Transport: transport, Result: res,
		Extra: map[string]float64{"contacts_per_s": perSec}})
	return rows, nil
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
