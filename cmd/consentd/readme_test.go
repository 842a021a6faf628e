package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/consentd/consentd/internal/daemontest"
	"github.com/consentd/consentd/internal/redisproc"
	"github.com/consentd/consentd/internal/redistest"
)

// TestReadmeSession runs the README's grpcurl session against a fresh
// consentd and compares every command's output with the README's text.
func TestReadmeSession(t *testing.T) {
	steps := daemontest.DocSession(t, "README.md", "grpcurl-session")
	if len(steps) < 8 {
		t.Fatalf("README session has %d commands, want the full grant/check/withdraw/erase story", len(steps))
	}
	d := startDaemon(t, "--listen", "127.0.0.1:0", "--data-dir", t.TempDir())
	runSteps(t, steps, map[string]string{"127.0.0.1:50051": d.Addr})
}

// TestReadmeRedisSession runs the two-sidecar session of
// docs/deploying-redis.md against two consentd processes sharing a test
// Redis, which share one secret file as the page's sidecars do.
func TestReadmeRedisSession(t *testing.T) {
	steps := daemontest.DocSession(t, "docs/deploying-redis.md", "redis-session")
	srv := redistest.Start(t, redisproc.Options{})
	secret := filepath.Join(t.TempDir(), "consentd.secret")
	if err := os.WriteFile(secret, []byte("readme-secret-0123456789abcdef"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"--redis", "redis://" + srv.Addr() + "/0", "--secret-file", secret, "--listen", "127.0.0.1:0"}
	// As the README starts them: the first initialises the new Redis.
	a := startDaemon(t, append([]string{"--redis-init"}, args...)...)
	b := startDaemon(t, args...)
	runSteps(t, steps, map[string]string{"127.0.0.1:50051": a.Addr, "127.0.0.1:50052": b.Addr})
}

// runSteps runs a documented session with grpcurl and grpc-health-probe on
// the PATH and the page's addresses replaced by the test daemons' (addrs).
func runSteps(t *testing.T, steps []daemontest.Step, addrs map[string]string) {
	t.Helper()
	bin := tools(t)
	daemontest.Shell{
		Env:     []string{"PATH=" + bin + string(os.PathListSeparator) + os.Getenv("PATH")},
		Replace: addrs,
	}.Run(t, steps)
}

// tools returns the directory holding grpcurl and grpc-health-probe,
// building them with scripts/tools (as the README has readers do) when they
// are not there yet.
func tools(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(root, ".bin")
	for _, name := range []string{"grpcurl", "grpc-health-probe"} {
		if _, err := os.Stat(filepath.Join(bin, name)); err != nil {
			if out, err := exec.Command(filepath.Join(root, "scripts", "tools")).CombinedOutput(); err != nil {
				t.Fatalf("scripts/tools: %v\n%s", err, out)
			}
			break
		}
	}
	return bin
}
