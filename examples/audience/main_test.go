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
// with this variable set, listening on a loopback port, so the audience
// travels over real TCP to a real daemon.
const asConsentd = "AUDIENCE_TEST_AS_CONSENTD"

func TestMain(m *testing.M) {
	if os.Getenv(asConsentd) == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		code := daemon.Run(ctx, os.Args[1:], os.Stderr)
		stop()
		os.Exit(code)
	}
	goleak.VerifyTestMain(m)
}

// startConsentd runs consentd with args on a free loopback port and returns
// its address once it serves. It is killed by PID when the test ends.
func startConsentd(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"--listen", "127.0.0.1:0", "--log-format", "json"}, args...)...)
	cmd.Env = append(os.Environ(), asConsentd+"=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	ready := make(chan string, 1)
	var (
		mu   sync.Mutex
		logs strings.Builder // for a failure message
	)
	go func() {
		defer close(exited)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var rec struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "consentd serving" {
				ready <- rec.Addr
			}
			mu.Lock()
			if logs.Len() < 64<<10 {
				logs.WriteString(sc.Text() + "\n")
			}
			mu.Unlock()
		}
		cmd.Wait()
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	select {
	case addr := <-ready:
		return addr
	case <-exited:
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("consentd exited before serving: %v\n%s", cmd.ProcessState, logs.String())
	case <-time.After(60 * time.Second):
		t.Fatal("consentd did not start within 60s")
	}
	return ""
}
