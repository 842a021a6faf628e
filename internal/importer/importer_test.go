package importer

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/consentd/consentd/internal/daemontest"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// NDJSON from stdin, with progress on a "terminal" and as plain lines,
// into a real consentd.
func TestRunNDJSONStdinProgress(t *testing.T) {
	recent := time.Now().AddDate(0, -1, 0).Format(time.DateOnly)
	addr := daemontest.Start(t, "--data-dir", t.TempDir()).Addr
	c := daemontest.Client(t, addr)
	var in strings.Builder
	in.WriteString("\n")
	for i := range 300 {
		fmt.Fprintf(&in, `{"contact": "p%d@example.com", "purpose": "email_marketing", "status": "granted", "method": "checkbox", "captured_at": %q, "bundled": false}`+"\n", i, recent)
	}
	in.WriteString(`{"contact": "x@example.com", "purpose": ` + "\n")
	in.WriteString(`{"contact": "y@example.com", "purpose": "email_marketing", "status": ["granted"]}` + "\n")
	for _, terminal := range []bool{false, true} {
		t.Run(fmt.Sprint("terminal=", terminal), func(t *testing.T) {
			var progress bytes.Buffer
			dir := t.TempDir()
			cfg := Config{File: "-", Format: "ndjson", Out: dir, Batch: 7, InFlight: 2,
				Actor: "test", Stdin: strings.NewReader(in.String()), Progress: &progress, Terminal: terminal,
				Now: time.Now, Every: time.Millisecond}
			rep, err := Run(testCtx(t), c, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(rep.Text, []byte("imported: 300 grants, 0 withdrawals")) {
				t.Errorf("report:\n%s", rep.Text)
			}
			rejects, _ := os.ReadFile(filepath.Join(dir, "rejects.csv"))
			if want := "line,reason\n302,row: not a JSON object: unexpected EOF\n303,\"status: want a string, got []interface {}\"\n"; string(rejects) != want {
				t.Errorf("rejects.csv:\n%s\nwant:\n%s", rejects, want)
			}
			s := progress.String()
			final := regexp.MustCompile(`import: done: 302 rows in \S+ \(\d+ rows/s\)\n$`)
			if !final.MatchString(s) {
				t.Errorf("progress does not end with the final line: %q", s)
			}
			if terminal && !strings.HasPrefix(s, "\r") {
				t.Errorf("on a terminal, progress is redrawn with \\r: %q", s)
			}
			if !terminal && !regexp.MustCompile(`^(import: \d+ rows, \d+ rows/s\n)*import: done`).MatchString(s) {
				t.Errorf("plain progress lines: %q", s)
			}
		})
	}
}
