package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/consentd/consentd/internal/daemontest"
	"github.com/consentd/consentd/internal/redisproc"
	"github.com/consentd/consentd/internal/redistest"
)

func TestMain(m *testing.M) { daemontest.Main(m) }

// A backend starts a consentd on one kind of store and returns its address.
type backend struct {
	name  string
	start func(t *testing.T) string
}

// backends are the stores every end-to-end test runs on: the embedded file
// and a real redis-server. The Redis sidecar uses one partition, so its
// tokens count writes exactly like the embedded store's. extra are more
// consentd flags.
func backends(extra ...string) []backend {
	return []backend{
		{"embedded", func(t *testing.T) string {
			return daemontest.Start(t, append([]string{"--data-dir", t.TempDir()}, extra...)...).Addr
		}},
		{"redis", func(t *testing.T) string {
			srv := redistest.Start(t, redisproc.Options{})
			return startConsentdOnRedis(t, srv, extra...)
		}},
	}
}

// testSecret is the contact-key secret of the sidecars on Redis.
const testSecret = "the consentctl tests' secret, 0123456789"

func startConsentdOnRedis(t *testing.T, srv *redistest.Server, extra ...string) string {
	t.Helper()
	secret := filepath.Join(t.TempDir(), "consentd.secret")
	if err := os.WriteFile(secret, []byte(testSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	// The one sidecar on a new Redis initialises it.
	return daemontest.Start(t, append([]string{"--redis", "redis://" + srv.Addr() + "/0", "--redis-init", "--secret-file", secret, "--partitions", "1"}, extra...)...).Addr
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// result is what one consentctl run did.
type result struct {
	code           int
	stdout, stderr string
}

// ctl runs consentctl with args and the environment env, in process.
func ctl(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(testCtx(t), args, func(k string) string { return env[k] }, &stdout, &stderr)
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// at runs consentctl against addr.
func at(t *testing.T, addr string, args ...string) result {
	t.Helper()
	return ctl(t, nil, append([]string{"--addr", addr}, args...)...)
}

// mustRun runs consentctl against addr and fails the test unless it exits 0.
func mustRun(t *testing.T, addr string, args ...string) string {
	t.Helper()
	r := at(t, addr, args...)
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("consentctl %s: exit %d, stderr %q", strings.Join(args, " "), r.code, r.stderr)
	}
	return r.stdout
}

var timestamps = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ`)

// nowPlaceholder stands for a time consentd took from its clock; it is as
// wide as the time, so tables stay aligned.
const nowPlaceholder = "NOW-----------------"

// normalise replaces the times within a few minutes of now (when consentd
// recorded something) with nowPlaceholder. Times the test chose are kept.
func normalise(s string) string {
	now := time.Now()
	return timestamps.ReplaceAllStringFunc(s, func(ts string) string {
		t, err := time.Parse(time.RFC3339, ts)
		if err == nil && t.After(now.Add(-10*time.Minute)) && t.Before(now.Add(10*time.Minute)) {
			return nowPlaceholder
		}
		return ts
	})
}
