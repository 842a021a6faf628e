package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"

	consentd "github.com/consentd/consentd/internal/daemon"
)

// asConsentd makes this binary run as consentd: the harness starts its
// sidecars from its own executable, so one `go run` builds everything.
const asConsentd = "CONSENTBENCH_AS_CONSENTD"

// runAsConsentd runs consentd and reports whether this process was asked to.
func runAsConsentd(ctx context.Context) (int, bool) {
	if os.Getenv(asConsentd) != "1" {
		return 0, false
	}
	return consentd.Run(ctx, os.Args[1:], os.Stderr), true
}

// sidecar is a consentd process the harness started; stop ends it by PID.
type sidecar struct {
	cmd    *exec.Cmd
	addr   string
	exited chan struct{}
}

// startSidecar runs consentd with args (plus JSON logs) and waits until it
// serves, with extra environment env (e.g. GOMAXPROCS).
func startSidecar(ctx context.Context, env []string, args ...string) (*sidecar, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, append([]string{"--log-format", "json"}, args...)...)
	cmd.Env = append(append(os.Environ(), asConsentd+"=1"), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &sidecar{cmd: cmd, exited: make(chan struct{})}
	ready := make(chan string, 1)
	go func() {
		defer close(s.exited)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var line struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "consentd serving" {
				ready <- line.Addr
			}
		}
		io.Copy(io.Discard, stderr)
		cmd.Wait()
	}()
	select {
	case s.addr = <-ready:
		return s, nil
	case <-s.exited:
		return nil, fmt.Errorf("consentd exited before serving: %v", cmd.ProcessState)
	case <-time.After(60 * time.Second):
		s.stop()
		return nil, errors.New("consentd did not start within 60s")
	case <-ctx.Done():
		s.stop()
		return nil, ctx.Err()
	}
}

// stop sends SIGTERM and waits; SIGKILL if it has not exited in 10s.
func (s *sidecar) stop() {
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
}
