//go:build unix

package doccheck

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"
	"time"
)

// TestScriptsRunPassesSignals: consentd started by scripts/run stops on a
// SIGTERM sent to the process scripts/run started as, as a process manager
// sends it, and stops serving. (A SIGTERM to `go run` ends go run and
// leaves its consentd child serving.) The first build of consentd into
// .bin/ takes minutes.
func TestScriptsRunPassesSignals(t *testing.T) {
	serving := regexp.MustCompile(`msg="consentd serving" addr=(\S+)`)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	run, err := filepath.Abs(filepath.Join(root, "scripts", "run"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, run, "--listen", "127.0.0.1:0")
	cmd.Dir = t.TempDir() // consentd's default data directory goes here
	cmd.Env = os.Environ()
	addrs := make(chan string, 1)
	cmd.Stderr = &lineWriter{line: func(line string) {
		if m := serving.FindStringSubmatch(line); m != nil {
			addrs <- m[1]
		}
	}}
	// Once the process ends, its output is read for at most this long: a
	// child left running (go run's consentd) holds the pipe open.
	cmd.WaitDelay = 5 * time.Second
	// Its own process group, so that whatever it leaves running when the
	// test fails can be stopped with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pgid := cmd.Process.Pid
	t.Cleanup(func() {
		if t.Failed() {
			syscall.Kill(-pgid, syscall.SIGKILL)
		}
	})
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var addr string
	select {
	case addr = <-addrs:
	case err := <-exited:
		t.Fatalf("scripts/run exited before consentd served: %v", err)
	case <-ctx.Done():
		<-exited // the context killed it
		t.Fatalf("consentd did not serve within 10 minutes of scripts/run")
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	select {
	case err := <-exited:
		if errors.Is(err, exec.ErrWaitDelay) {
			t.Errorf("after SIGTERM scripts/run's process ended, but a process it started still holds its output: consentd did not get the SIGTERM")
		} else if err != nil {
			t.Errorf("after SIGTERM: %v, want exit status 0", err)
		}
	case <-time.After(30 * time.Second): // --shutdown-timeout is 10 s
		cmd.Process.Kill()
		<-exited
		t.Fatal("scripts/run's process did not end within 30 s of SIGTERM")
	}
	t.Logf("stopped %v after SIGTERM", time.Since(start))
	if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		conn.Close()
		t.Errorf("%s still accepts connections after the process scripts/run started ended: consentd did not get the SIGTERM", addr)
	}
}

// lineWriter calls line with each complete line written to it.
type lineWriter struct {
	line func(string)
	buf  []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		w.line(string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
}
