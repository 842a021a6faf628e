package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/consentd/consentd/bench/scenario"
	"github.com/consentd/consentd/bench/soak"
)

const soakUsage = `usage: consentbench soak [flags]

Runs the fault-injection soak (package bench/soak): a redis-server and two
consentd sidecars started from this binary, mixed load through the client
(Checks with and without tokens, grants, withdrawals, erasures,
FilterAudience), while Redis is stopped, killed, flushed and set to evict,
one sidecar's connections are cut and stalled and each sidecar is killed -9,
one fault at a time. An oracle judges every answer and acknowledged write;
the report (soak.md, soak.json in -out, the table also on stdout) lists the
must-be-zero counts and each fault's times to NOT_SERVING and back. The
exit status is 1 if any must-be-zero count is not 0.

CI runs a minute:   consentbench soak --duration 60s
an hour:            consentbench soak --duration 1h --out soak-out

`

func parseSoakFlags(args []string, stderr io.Writer) (soak.Config, string, error) {
	c := soak.DefaultConfig()
	fs := flag.NewFlagSet("consentbench soak", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), soakUsage)
		fs.PrintDefaults()
	}
	fs.DurationVar(&c.Duration, "duration", c.Duration, "how long the load runs (faults start only while one still fits)")
	fs.Float64Var(&c.Rate, "rate", c.Rate, "Checks per second, alternating between the sidecars")
	fs.Float64Var(&c.WriteRate, "write-rate", c.WriteRate, "grants, withdrawals and erasures per second")
	fs.Float64Var(&c.StreamRate, "stream-rate", c.StreamRate, "FilterAudience streams per second")
	fs.IntVar(&c.Contacts, "contacts", c.Contacts, "synthetic contacts the load spreads over (each audit reads them all)")
	fs.Uint64Var(&c.Seed, "seed", c.Seed, "seed of the load's choices")
	faults := fs.String("faults", strings.Join(c.Faults, ","), "the faults the schedule cycles through, in order: "+strings.Join(soak.AllFaults(), ", "))
	fs.DurationVar(&c.FaultInterval, "fault-interval", c.FaultInterval, "quiet load between a fault's recovery and the next fault")
	fs.DurationVar(&c.FaultHold, "fault-hold", c.FaultHold, "how long each fault lasts")
	fs.DurationVar(&c.NoticeTimeout, "notice-timeout", c.NoticeTimeout, "how long the operator waits for both sidecars to be NOT_SERVING after a FLUSHALL, or SERVING after a drift, before acting anyway")
	fs.DurationVar(&c.RecoveryTimeout, "recovery-timeout", c.RecoveryTimeout, "how long the sidecars may take to be SERVING again after a fault before the run fails")
	fs.DurationVar(&c.RequestTimeout, "request-timeout", c.RequestTimeout, "each request's deadline")
	fs.DurationVar(&c.Stall, "stall", c.Stall, "a Check slower than this fails the run (about 3 times what a Check takes when every attempt of the client meets consentd's 200 ms store deadline)")
	fs.DurationVar(&c.Lease, "lease", c.Lease, "consentd's --lease, and the oracle's")
	fs.BoolVar(&c.RedisInit, "redis-init", c.RedisInit, "start the first sidecar, and re-initialise a wiped store, with consentd's --redis-init (false for a consentd without it: every start is plain)")
	out := fs.String("out", "soak-out", "directory for soak.md, soak.json and consentd.log (the sidecars' warnings and errors, but the line of each refused call)")
	if err := fs.Parse(args); err != nil {
		return c, "", err
	}
	if fs.NArg() > 0 {
		return c, "", fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	c.Faults = nil
	for _, f := range strings.Split(*faults, ",") {
		c.Faults = append(c.Faults, strings.TrimSpace(f))
	}
	return c, *out, c.Validate()
}

func runSoak(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, out, err := parseSoakFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "consentbench soak:", err)
		return 2
	}
	report, err := soakRun(ctx, cfg, out, args, stderr)
	if err == nil {
		err = report.WriteMarkdown(stdout)
	}
	if err != nil {
		fmt.Fprintln(stderr, "consentbench soak:", err)
		return 1
	}
	if report.Failed() {
		fmt.Fprintln(stderr, "consentbench soak: FAILED: a must-be-zero count is not 0 (see", filepath.Join(out, "soak.md")+")")
		return 1
	}
	return 0
}

// soakRun builds consentd, runs the soak with it and writes the report into
// out; args are the command line, for the report.
func soakRun(ctx context.Context, cfg soak.Config, out string, args []string, stderr io.Writer) (*soak.Report, error) {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, err
	}
	f, err := os.Create(filepath.Join(out, "consentd.log"))
	if err != nil {
		return nil, err
	}
	logs := &soakLog{w: f, left: maxSoakLog}
	defer func() {
		logs.close()
		f.Close()
	}()
	dir, err := os.MkdirTemp("", "consentbench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	consentd, err := scenario.BuildConsentd(ctx, dir)
	if err != nil {
		return nil, err
	}
	report, err := soak.Run(ctx, cfg, launcher{consentd: consentd, logs: logs}, stderr)
	if err != nil {
		return nil, err
	}
	report.Config["command"] = "go run ./cmd/consentbench soak " + strings.Join(args, " ")
	for name, write := range map[string]func(io.Writer) error{"soak.md": report.WriteMarkdown, "soak.json": report.WriteJSON} {
		if err := writeFile(filepath.Join(out, name), write); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	return report, nil
}

// launcher starts the soak's sidecars from the consentd binary.
type launcher struct {
	consentd string
	logs     io.Writer
}

func (l launcher) Start(ctx context.Context, args ...string) (soak.Process, error) {
	s, err := scenario.StartSidecar(ctx, l.consentd, l.logs, nil, args...)
	if err != nil {
		return nil, err // not a nil *scenario.Sidecar in a non-nil Process
	}
	return s, nil
}

// maxSoakLog bounds consentd.log.
const maxSoakLog = 16 << 20

// soakLog is consentd.log: the sidecars' warnings and errors, except the
// line consentd logs for every call it refuses (the soak counts those
// itself; they would be most of the file, tens of MB in ten minutes),
// which it counts, up to maxSoakLog bytes.
type soakLog struct {
	mu      sync.Mutex
	w       io.Writer
	left    int
	calls   int // refused calls' lines
	dropped int // lines past the bound
}

// Write takes one line.
func (l *soakLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case bytes.Contains(p, []byte(`"msg":"rpc"`)):
		l.calls++
	case len(p) > l.left:
		l.dropped++
	default:
		l.left -= len(p)
		l.w.Write(p)
	}
	return len(p), nil
}

func (l *soakLog) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, "(consentbench: %d lines of refused calls not copied, %d lines past %d MiB dropped)\n", l.calls, l.dropped, maxSoakLog>>20)
}
