// Package daemontest runs consentd for real in tests: as a process of its
// own (Start), and through the shell sessions the README and docs/ print
// (DocSession, Shell).
//
// Start and Command run the real consentd binary, built from cmd/consentd
// (with the race detector when the tests have it) once per test binary, the
// first time a test needs it: a package's TestMain calls Main. Every
// process is killed by PID and reaped when its test ends, whether or not
// the test failed.
package daemontest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// binDirEnv names the directory Main made for the consentd binary.
const binDirEnv = "CONSENTD_DAEMONTEST_BIN_DIR"

const (
	// startTimeout bounds how long consentd may take to serve.
	startTimeout = 60 * time.Second
	// exitTimeout bounds how long Wait and Stop wait for consentd to exit.
	exitTimeout = 30 * time.Second
	// maxLog is how much of a process's log is kept for a failure's report:
	// the latest lines, at least this many bytes of them.
	maxLog = 256 << 10
)

// Main is a test binary's TestMain: it runs the tests, fails them if they
// leak goroutines, and removes the consentd binary Start and Command built.
func Main(m *testing.M) {
	dir, err := os.MkdirTemp("", "consentd-daemontest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "daemontest:", err)
		os.Exit(1)
	}
	os.Setenv(binDirEnv, dir)
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		os.RemoveAll(dir)
		os.Exit(code)
	}))
}

// Binary returns the path of the consentd binary, building it the first
// time (the binary's TestMain must call Main). Tests running in parallel
// may both build it; each links its own file and renames it into place, so
// none runs a half-written one.
func Binary(t testing.TB) string {
	t.Helper()
	dir := os.Getenv(binDirEnv)
	if dir == "" {
		t.Fatal("daemontest: the package's TestMain must call daemontest.Main")
	}
	bin := filepath.Join(dir, "consentd")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	tmp, err := os.CreateTemp(dir, "consentd-*")
	if err != nil {
		t.Fatal(err)
	}
	tmp.Close()
	args := []string{"-o", tmp.Name()}
	if raceDetector {
		args = append(args, "-race")
	}
	if err := goBuild(append(args, "github.com/consentd/consentd/cmd/consentd")...); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp.Name(), bin); err != nil {
		t.Fatal(err)
	}
	return bin
}

// goBuild runs go build with args.
func goBuild(args ...string) error {
	out, err := exec.Command("go", append([]string{"build"}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("go build %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// Command returns a command that runs consentd with args, exactly as given
// (text logs, the default listen address): for tests of the command line
// itself. The binary's TestMain must call Main.
func Command(t testing.TB, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(Binary(t), args...)
	cmd.SysProcAttr = sysProcAttr()
	return cmd
}

// Refused runs consentd with args, listening on a free loopback port,
// and returns what it said: it must refuse to start (exit 1, never
// serving). One that serves instead is killed (by its PID) after a
// minute, so the test fails rather than hangs.
func Refused(t testing.TB, args ...string) string {
	t.Helper()
	cmd := Command(t, append([]string{"--listen", "127.0.0.1:0"}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	kill := time.AfterFunc(time.Minute, func() { cmd.Process.Kill() })
	cmd.Wait()
	kill.Stop()
	if code := cmd.ProcessState.ExitCode(); code != 1 || strings.Contains(out.String(), "consentd serving") {
		t.Fatalf("consentd %s: exit %d, output:\n%s\nwant exit 1 without serving", strings.Join(args, " "), code, out.String())
	}
	return out.String()
}

// Daemon is a consentd process started by Start.
type Daemon struct {
	Addr    string // the gRPC address it serves on
	HTTP    string // the one-click unsubscribe listener; "" without --http
	Metrics string // the --metrics-listen address; "" without it
	Health  string // the --health-listen address; "" without it
	// LogFile holds every byte the process wrote to stderr, however long
	// its lines (the failure report keeps only the latest): complete once
	// it has exited (Stop, Wait, Kill).
	LogFile string

	cmd    *exec.Cmd
	exited chan struct{} // closed once the process has exited and been reaped
	logs   logTail
}

// Start runs consentd with args and returns once it serves. Its gRPC
// listener defaults to a free loopback port (args may name another with
// --listen); it logs JSON, which Start reads to learn its addresses. When
// the test ends the process is killed by PID and reaped, and if the test
// failed its log is reported.
func Start(t testing.TB, args ...string) *Daemon {
	t.Helper()
	args = append([]string{"--log-format", "json", "--listen", "127.0.0.1:0"}, args...)
	cmd := Command(t, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	d := &Daemon{cmd: cmd, exited: make(chan struct{}), LogFile: filepath.Join(t.TempDir(), "consentd.log")}
	logFile, err := os.Create(d.LogFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		t.Fatal(err)
	}
	type serving struct{ Msg, Addr, HTTP, Metrics, Health string }
	ready := make(chan serving, 1)
	go func() {
		defer close(d.exited)
		defer logFile.Close()
		stderr := io.TeeReader(stderr, logFile)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(nil, maxLog)
		for sc.Scan() {
			d.logs.add(sc.Bytes())
			var rec serving
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "consentd serving" {
				select {
				case ready <- rec:
				default:
				}
			}
		}
		io.Copy(io.Discard, stderr) // after a line too long to scan: keep consentd from blocking
		cmd.Wait()
	}()
	t.Cleanup(func() {
		d.Kill()
		if t.Failed() {
			t.Logf("consentd %s (pid %d) logged:\n%s", strings.Join(args, " "), cmd.Process.Pid, d.logs.String())
		}
	})
	select {
	case rec := <-ready:
		d.Addr, d.HTTP, d.Metrics, d.Health = rec.Addr, rec.HTTP, rec.Metrics, rec.Health
	case <-d.exited:
		t.Fatalf("consentd exited before serving: %v", cmd.ProcessState)
	case <-time.After(startTimeout):
		t.Fatalf("consentd did not serve within %v", startTimeout)
	}
	if d.HTTP == "" && asksForHTTP(args) {
		t.Fatal(`consentd did not log its HTTP address ("http" in "consentd serving")`)
	}
	return d
}

// asksForHTTP reports whether args turn on the --http listener.
func asksForHTTP(args []string) bool {
	for _, a := range args {
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if strings.HasPrefix(a, "-") && name == "http" {
			return true
		}
	}
	return false
}

// Logs returns what consentd has logged so far (JSON, a record a line): its
// latest lines, at least the last 256 KiB of them.
func (d *Daemon) Logs() string { return d.logs.String() }

// Signal sends sig to the process and returns without waiting.
func (d *Daemon) Signal(t testing.TB, sig os.Signal) {
	t.Helper()
	if err := d.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signalling consentd: %v", err)
	}
}

// Wait waits until the process has exited and returns its exit status.
func (d *Daemon) Wait(t testing.TB) int {
	t.Helper()
	select {
	case <-d.exited:
		return d.cmd.ProcessState.ExitCode()
	case <-time.After(exitTimeout):
		t.Fatalf("consentd did not exit within %v", exitTimeout)
		return -1
	}
}

// Stop shuts consentd down as an orchestrator does (SIGTERM), waits until it
// has exited, and returns its exit status.
func (d *Daemon) Stop(t testing.TB) int {
	t.Helper()
	d.Signal(t, syscall.SIGTERM)
	return d.Wait(t)
}

// Kill kills the process (SIGKILL, by PID: a pidfd on Linux, never by name)
// and waits until it has exited. It may be called from any goroutine, more
// than once, and after the process has exited.
func (d *Daemon) Kill() {
	d.cmd.Process.Kill() // an error means it has exited already
	<-d.exited
}

// logTail keeps the latest lines of a log.
type logTail struct {
	mu      sync.Mutex
	b       []byte
	dropped bool
}

func (l *logTail) add(line []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b = append(append(l.b, line...), '\n')
	if len(l.b) > 2*maxLog {
		cut := len(l.b) - maxLog
		if i := bytes.IndexByte(l.b[cut:], '\n'); i >= 0 {
			cut += i + 1
		}
		l.b = append(l.b[:0], l.b[cut:]...)
		l.dropped = true
	}
}

func (l *logTail) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.dropped {
		return "(earlier lines dropped)\n" + string(l.b)
	}
	return string(l.b)
}
