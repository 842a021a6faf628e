// Command consentd is the consent sidecar: a gRPC server that answers "may I
// use contact X for purpose Y?" from an in-memory cache in front of its store,
// and records, withdraws and erases consent. With no store flags it keeps
// everything in one local file under --data-dir; with --redis,
// --redis-sentinel or --redis-cluster many sidecars share one Redis.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	consentd "github.com/consentd/consentd/internal/daemon"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := consentd.Run(ctx, os.Args[1:], os.Stderr)
	stop()
	os.Exit(code)
}
