package daemontest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// PID is the consentd process's id.
func (d *Daemon) PID() int { return d.cmd.Process.Pid }

// RSS returns the process's resident set size in bytes, as the kernel
// reports it in /proc/PID/status (VmRSS): the memory consentd holds that
// the machine cannot give to anyone else. consentd's tests run on Linux:
// without /proc the test fails rather than pass unmeasured.
func (d *Daemon) RSS(t testing.TB) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.PID()))
	if err != nil {
		t.Fatalf("reading consentd's RSS: %v", err)
	}
	for line := range bytes.Lines(b) {
		if rest, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			// "VmRSS:	  123456 kB"
			f := bytes.Fields(rest)
			if len(f) != 2 || string(f[1]) != "kB" {
				break
			}
			kb, err := strconv.ParseInt(string(f[0]), 10, 64)
			if err != nil {
				break
			}
			return kb << 10
		}
	}
	t.Fatalf("no VmRSS line in /proc/%d/status:\n%s", d.PID(), b)
	return 0
}

// Metric returns the value of the sample named name (with its labels, as
// exposed: `go_memstats_heap_inuse_bytes`) that consentd's metrics
// listener serves now, or an error when it cannot be read within 5 s (a
// consentd starved of CPU may take longer). consentd must run with
// --metrics-listen.
func (d *Daemon) Metric(name string) (float64, error) {
	if d.Metrics == "" {
		return 0, errors.New("consentd runs without --metrics-listen")
	}
	hc := http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Get("http://" + d.Metrics + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("consentd serves no metric %s", name)
}
