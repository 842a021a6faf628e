// Command consentd is the consent sidecar: a gRPC server that answers "may I
// use contact X for purpose Y?" from an in-memory cache in front of its store,
// and records, withdraws and erases consent. With no store flags it keeps
// everything in one local file under --data-dir; with --redis,
// --redis-sentinel or --redis-cluster many sidecars share one Redis.
//
// This package is consentd's command line (flags.go); package
// internal/daemon is consentd itself.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/consentd/consentd/internal/daemon"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := profiled(func() int { return run(ctx, os.Args[1:], os.Getenv, os.Stderr) })
	stop()
	os.Exit(code)
}

// run runs consentd with command-line args and the CONSENTD_* variables
// getenv reports until ctx is done, and returns the exit code: 2 for a
// command line or configuration refused (see daemon.Run for the others).
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) int {
	c, err := parseFlags(args, getenv, stderr)
	var usage usageError
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &usage):
		fmt.Fprintf(stderr, "consentd: %v\nRun 'consentd --help' for the flags.\n", err)
		return 2
	case err != nil:
		fmt.Fprintln(stderr, "consentd:", err)
		return 2
	}
	return daemon.Run(ctx, c, stderr)
}
