package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"syscall"
	"time"

	consentd "github.com/consentd/consentd/internal/daemon"
)

// asConsentd makes this binary run as consentd: the harness starts its
// sidecars from its own executable, so one `go run` builds everything.
const asConsentd = "CONSENTBENCH_AS_CONSENTD"

// The profiles a sidecar writes, when these name files.
const (
	cpuProfileEnv = "CONSENTBENCH_CPUPROFILE"
	memProfileEnv = "CONSENTBENCH_MEMPROFILE"
)

// runAsConsentd runs consentd and reports whether this process was asked to.
func runAsConsentd(ctx context.Context) (int, bool) {
	if os.Getenv(asConsentd) != "1" {
		return 0, false
	}
	if path := os.Getenv(cpuProfileEnv); path != "" {
		f, err := os.Create(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, "consentbench:", err)
			return 1, true
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "consentbench:", err)
			return 1, true
		}
		defer pprof.StopCPUProfile()
	}
	code := consentd.Run(ctx, os.Args[1:], os.Stderr)
	if path := os.Getenv(memProfileEnv); path != "" {
		runtime.GC() // the heap as the last collection left it, up to date
		f, err := os.Create(path)
		if err == nil {
			err = errors.Join(pprof.WriteHeapProfile(f), f.Close())
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "consentbench:", err)
			return 1, true
		}
	}
	return code, true
}

// uniquePath is dir/name+ext, or dir/name-2+ext and so on when that exists:
// the same setup may run more than once.
func uniquePath(dir, name, ext string) string {
	p := filepath.Join(dir, name+ext)
	for i := 2; ; i++ {
		if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
			return p
		}
		p = filepath.Join(dir, fmt.Sprintf("%s-%d%s", name, i, ext))
	}
}

// sidecar is a consentd process the harness started; stop ends it by PID.
type sidecar struct {
	cmd    *exec.Cmd
	addr   string
	exited chan struct{}
	stats  cacheStats // from its last log line; read after exited is closed
	last   string     // its last warning, error or non-JSON line; read after exited is closed
}

// cacheStats are the cache counters consentd logs as it stops.
type cacheStats struct {
	ok           bool // the line was seen
	hits, misses uint64
}

// startSidecar runs consentd with args (plus JSON logs) and waits until it
// serves, with extra environment env (e.g. GOMAXPROCS). Its warnings and
// errors are copied to logs.
func startSidecar(ctx context.Context, logs io.Writer, env []string, args ...string) (*sidecar, error) {
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
			var line struct {
				Level       string
				Msg, Addr   string
				CacheHits   uint64 `json:"cache_hits"`
				CacheMisses uint64 `json:"cache_misses"`
			}
			if json.Unmarshal(sc.Bytes(), &line) != nil || (line.Level != "INFO" && line.Level != "DEBUG") {
				// Warnings and errors change what a run means, and what is
				// not JSON is a refusal to start: show them.
				s.last = sc.Text()
				fmt.Fprintf(logs, "consentd: %s\n", sc.Bytes())
			}
			switch line.Msg {
			case "consentd serving":
				ready <- line.Addr
			case "stopped":
				s.stats = cacheStats{ok: true, hits: line.CacheHits, misses: line.CacheMisses}
			}
		}
		io.Copy(io.Discard, stderr)
		cmd.Wait()
	}()
	select {
	case s.addr = <-ready:
		return s, nil
	case <-s.exited:
		return nil, fmt.Errorf("consentd exited before serving (%v): %s", cmd.ProcessState, s.last)
	case <-time.After(60 * time.Second):
		s.stop()
		return nil, errors.New("consentd did not start within 60s")
	case <-ctx.Done():
		s.stop()
		return nil, ctx.Err()
	}
}

// stop sends SIGTERM and waits (SIGKILL if it has not exited in 10s), and
// returns the cache counters it logged as it stopped.
func (s *sidecar) stop() cacheStats {
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
	return s.stats
}

// Stop is stop for the soak (a soak.Process).
func (s *sidecar) Stop() error {
	s.stop()
	return nil
}

// Kill sends SIGKILL and waits until the sidecar has exited.
func (s *sidecar) Kill() error {
	err := s.cmd.Process.Kill()
	<-s.exited
	if errors.Is(err, os.ErrProcessDone) {
		return nil
	}
	return err
}
