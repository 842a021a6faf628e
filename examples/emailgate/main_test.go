package main

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/consentd/consentd/internal/daemon"
)

// The test binary doubles as consentd: tests start it as a real process
// with this variable set, listening on loopback ports (gRPC and --http), so
// checks, links and clicks travel over real TCP to a real daemon.
const asConsentd = "EMAILGATE_TEST_AS_CONSENTD"

func TestMain(m *testing.M) {
	if os.Getenv(asConsentd) == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		code := daemon.Run(ctx, os.Args[1:], os.Stderr)
		stop()
		os.Exit(code)
	}
	goleak.VerifyTestMain(m)
}

// consentd is a running consentd process.
type consentd struct {
	addr string // gRPC
	http string // the one-click unsubscribe listener
	kill func() // kills it and waits until it has exited
}

// startConsentd runs consentd with args, its gRPC and HTTP listeners on
// free loopback ports, and returns once it serves. It is killed by PID when
// the test ends, whether or not the test failed.
func startConsentd(t *testing.T, args ...string) consentd {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--log-format", "json"}, args...)...)
	cmd.Env = append(os.Environ(), asConsentd+"=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	ready := make(chan consentd, 1)
	var (
		mu   sync.Mutex
		logs strings.Builder // for a failure message
	)
	go func() {
		defer close(exited)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var rec struct{ Msg, Addr, HTTP string }
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "consentd serving" {
				ready <- consentd{addr: rec.Addr, http: rec.HTTP}
			}
			mu.Lock()
			if logs.Len() < 64<<10 {
				logs.WriteString(sc.Text() + "\n")
			}
			mu.Unlock()
		}
		cmd.Wait()
	}()
	kill := sync.OnceFunc(func() {
		cmd.Process.Kill()
		<-exited
	})
	t.Cleanup(kill)
	select {
	case d := <-ready:
		if d.http == "" {
			t.Fatal(`consentd did not log its HTTP address ("http" in "consentd serving")`)
		}
		d.kill = kill
		return d
	case <-exited:
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("consentd exited before serving: %v\n%s", cmd.ProcessState, logs.String())
	case <-time.After(60 * time.Second):
		t.Fatal("consentd did not start within 60s")
	}
	return consentd{}
}
