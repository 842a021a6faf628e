package scenario

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
	"syscall"
	"time"
)

// The profiles a sidecar writes, when these name files: cmd/consentd's
// profile.go, built in by BuildConsentd, reads them.
const (
	cpuProfileEnv = "CONSENTBENCH_CPUPROFILE"
	memProfileEnv = "CONSENTBENCH_MEMPROFILE"
)

// BuildConsentd builds consentd into dir and returns its path. The sidecars
// are the real consentd, with the profile hooks of --cpuprofile and
// --memprofile (inert unless asked for); consentbench runs from the
// module's tree (go run ./cmd/consentbench), which has consentd's source.
func BuildConsentd(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "consentd")
	out, err := exec.CommandContext(ctx, "go", "build", "-tags", "profile", "-o", bin, "github.com/consentd/consentd/cmd/consentd").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("building consentd: %v\n%s", err, out)
	}
	return bin, nil
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

// Sidecar is a consentd process the harness started; stop ends it by PID.
type Sidecar struct {
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

// StartSidecar runs the consentd binary with args (plus JSON logs) and
// waits until it serves, with extra environment env (e.g. GOMAXPROCS). Its
// warnings and errors are copied to logs.
func StartSidecar(ctx context.Context, consentd string, logs io.Writer, env []string, args ...string) (*Sidecar, error) {
	cmd := exec.Command(consentd, append([]string{"--log-format", "json"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &Sidecar{cmd: cmd, exited: make(chan struct{})}
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
func (s *Sidecar) stop() cacheStats {
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
func (s *Sidecar) Stop() error {
	s.stop()
	return nil
}

// Kill sends SIGKILL and waits until the sidecar has exited.
func (s *Sidecar) Kill() error {
	err := s.cmd.Process.Kill()
	<-s.exited
	if errors.Is(err, os.ErrProcessDone) {
		return nil
	}
	return err
}
