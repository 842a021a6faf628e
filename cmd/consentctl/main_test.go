package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/consentd/consentd/internal/daemon"
	"github.com/consentd/consentd/internal/redistest"
)

// The test binary doubles as consentd: tests start it as a real process with
// this variable set, so `go test ./cmd/consentctl` needs nothing built.
const asConsentd = "CONSENTCTL_TEST_AS_CONSENTD"

func TestMain(m *testing.M) {
	if os.Getenv(asConsentd) == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		code := daemon.Run(ctx, os.Args[1:], os.Stderr)
		stop()
		os.Exit(code)
	}
	goleak.VerifyTestMain(m)
}

// startConsentd runs a real consentd process with args and returns the
// address it serves on once it does. It is killed by PID and reaped when the
// test ends, whether or not the test failed.
func startConsentd(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"--log-format", "json"}, args...)...)
	cmd.Env = append(os.Environ(), asConsentd+"=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	exited := make(chan struct{})
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logs.Write(append(sc.Bytes(), '\n'))
			var rec struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "consentd serving" {
				select {
				case ready <- rec.Addr:
				default:
				}
			}
		}
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill() // by PID (a pidfd on Linux), never by name
		<-exited
		if t.Failed() {
			t.Logf("consentd %v logged:\n%s", args, logs.String())
		}
	})
	select {
	case addr := <-ready:
		return addr
	case <-exited:
		t.Fatalf("consentd exited before serving: %v\n%s", cmd.ProcessState, logs.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("consentd did not start within 30s\n%s", logs.String())
	}
	return ""
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A backend starts a consentd on one kind of store and returns its address.
type backend struct {
	name  string
	start func(t *testing.T) string
}

// backends are the stores every end-to-end test runs on: the embedded file
// and a real redis-server. The Redis sidecar uses one partition, so its
// tokens count writes exactly like the embedded store's.
func backends() []backend {
	return []backend{
		{"embedded", func(t *testing.T) string {
			return startConsentd(t, "--listen", "127.0.0.1:0", "--data-dir", t.TempDir())
		}},
		{"redis", func(t *testing.T) string {
			srv := redistest.Start(t, redistest.Options{})
			return startConsentdOnRedis(t, srv)
		}},
	}
}

func startConsentdOnRedis(t *testing.T, srv *redistest.Server) string {
	t.Helper()
	secret := filepath.Join(t.TempDir(), "consentd.secret")
	if err := os.WriteFile(secret, []byte("the consentctl tests' secret, 0123456789"), 0o600); err != nil {
		t.Fatal(err)
	}
	return startConsentd(t, "--listen", "127.0.0.1:0", "--redis", "redis://"+srv.Addr()+"/0",
		"--secret-file", secret, "--partitions", "1")
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
