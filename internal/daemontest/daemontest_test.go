package daemontest

import (
	"fmt"
	"net"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func TestMain(m *testing.M) { Main(m) }

func serves(t *testing.T, addr string) bool {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	resp, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{})
	return err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING
}

func TestStartStop(t *testing.T) {
	d := Start(t, "--http", "127.0.0.1:0", "--data-dir", t.TempDir())
	if !serves(t, d.Addr) {
		t.Fatalf("consentd at %s does not serve", d.Addr)
	}
	if conn, err := net.DialTimeout("tcp", d.HTTP, 5*time.Second); err != nil {
		t.Errorf("HTTP listener %q: %v", d.HTTP, err)
	} else {
		conn.Close()
	}
	if !strings.Contains(d.logs.String(), `"msg":"consentd serving"`) {
		t.Errorf("logs lack the serving line:\n%s", d.logs.String())
	}
	if code := d.Stop(t); code != 0 {
		t.Errorf("exit status after SIGTERM = %d, want 0", code)
	}
	// The log file holds everything, the last line included.
	if b, err := os.ReadFile(d.LogFile); err != nil || !strings.Contains(string(b), `"msg":"consentd serving"`) || !strings.HasSuffix(string(b), "\n") ||
		!strings.Contains(string(b), `"msg":"stopped"`) {
		t.Errorf("log file %s (%v) lacks the serving or the last line:\n%s", d.LogFile, err, b)
	}
	d.Kill() // after the exit: a no-op
}

func TestKill(t *testing.T) {
	dir := t.TempDir()
	d := Start(t, "--data-dir", dir)
	if d.HTTP != "" {
		t.Errorf("HTTP = %q without --http", d.HTTP)
	}
	d.Kill()
	if code := d.Wait(t); code != -1 || d.cmd.ProcessState.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("after Kill: %v, want killed by SIGKILL", d.cmd.ProcessState)
	}
	// The store is free for the next process.
	if d := Start(t, "--data-dir", dir); !serves(t, d.Addr) {
		t.Error("a restarted consentd does not serve")
	}
}

func TestCommand(t *testing.T) {
	out, err := Command("--nope").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "flag provided but not defined") {
		t.Errorf("consentd --nope: %v, %q; want exit 2 and a usage error", err, out)
	}
}

func TestAsksForHTTP(t *testing.T) {
	tests := []struct {
		args []string
		want bool
	}{
		{[]string{"--http", "127.0.0.1:0"}, true},
		{[]string{"-http=127.0.0.1:0"}, true},
		{[]string{"--data-dir", "http"}, false},
		{[]string{"--http-other", "x"}, false},
	}
	for _, tt := range tests {
		if got := asksForHTTP(tt.args); got != tt.want {
			t.Errorf("asksForHTTP(%q) = %v, want %v", tt.args, got, tt.want)
		}
	}
}

const readme = "Intro.\n\n<!-- demo -->\n```console\n" +
	"$ cd \"$(mktemp -d)\"\n" +
	"$ x=1; echo \"$x\" \\\n>   two\n1 two\n" +
	"$ cat > f <<'EOF'\n> a\n>\n> b\n> EOF\n" +
	"$ cat f\na\n\nb\n```\n\nBetween.\n\n<!-- demo-2 -->\n```console\n" +
	"$ echo \"$x\" at 127.0.0.1:50051; echo oops >&2\n1 at 127.0.0.1:50051\noops\n" +
	"$ date -u +%FT%TZ\n2026-11-28T17:28:22Z\n```\n"

func TestParseSession(t *testing.T) {
	want := []Step{
		{Cmd: `cd "$(mktemp -d)"`},
		{Cmd: "x=1; echo \"$x\" \\\n  two", Want: "1 two"},
		{Cmd: "cat > f <<'EOF'\na\n\nb\nEOF"},
		{Cmd: "cat f", Want: "a\n\nb"},
		{Cmd: "echo \"$x\" at 127.0.0.1:50051; echo oops >&2", Want: "1 at 127.0.0.1:50051\noops"},
		{Cmd: "date -u +%FT%TZ", Want: "2026-11-28T17:28:22Z"},
	}
	got := append(parseSession(t, "demo.md", readme, "demo"), parseSession(t, "demo.md", readme, "demo-2")...)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestShellRun runs a session whose state carries from one command to the
// next, with an address replaced and a time normalised.
func TestShellRun(t *testing.T) {
	now := regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ`)
	Shell{
		Replace:   map[string]string{"127.0.0.1:50051": "127.0.0.1:4"},
		Normalise: func(s string) string { return now.ReplaceAllString(s, "NOW") },
	}.Run(t, append(parseSession(t, "demo.md", readme, "demo"), parseSession(t, "demo.md", readme, "demo-2")...))
}

// TestShellLeavesNoFile: a session that writes a file where it started (the
// reader's clone) fails, and mktemp makes its directories in the test's
// own temporary directory.
func TestShellLeavesNoFile(t *testing.T) {
	for _, tt := range []struct {
		name, cmd string
		fails     bool
	}{
		{"scratch directory", `cd "$(mktemp -d)" && touch f`, false},
		{"file in the clone", `touch f`, true},
		{"directory in the clone", `mkdir consentd-data`, true},
	} {
		rt := &errorT{T: t}
		Shell{}.Run(rt, []Step{{Cmd: tt.cmd}})
		if rt.failed != tt.fails {
			t.Errorf("%s: failed = %v, want %v %q", tt.name, rt.failed, tt.fails, rt.errors)
		}
	}
	testTmp := regexp.MustCompile(`^` + regexp.QuoteMeta(os.TempDir()) + `/` + t.Name() + `\d+/\d+/tmp\.\w+$`)
	Shell{Normalise: func(s string) string { return testTmp.ReplaceAllString(s, "TEST-TMP") }}.
		Run(t, []Step{{Cmd: "mktemp -d", Want: "TEST-TMP"}})
}

// errorT records an Errorf instead of failing the test.
type errorT struct {
	*testing.T
	failed bool
	errors []string
}

func (e *errorT) Errorf(format string, args ...any) {
	e.failed = true
	e.errors = append(e.errors, fmt.Sprintf(format, args...))
}

func TestReplacers(t *testing.T) {
	forth, back := replacers(map[string]string{"127.0.0.1:50051": "127.0.0.1:4123", "127.0.0.1:8080": "127.0.0.1:41234"})
	const readme = "grpc 127.0.0.1:50051, http 127.0.0.1:8080"
	const run = "grpc 127.0.0.1:4123, http 127.0.0.1:41234"
	if got := forth.Replace(readme); got != run {
		t.Errorf("forth = %q, want %q", got, run)
	}
	if got := back.Replace(run); got != readme {
		t.Errorf("back = %q, want %q", got, readme)
	}
}

func TestBadSession(t *testing.T) {
	for _, tt := range []struct{ name, readme string }{
		{"missing", readme},
		{"repeated", readme + "<!-- absent -->\n```console\n$ true\n```\n<!-- absent -->\n```console\n$ true\n```\n"},
		{"not a console block", readme + "<!-- absent -->\n```sh\ntrue\n```\n"},
		{"output first", readme + "<!-- absent -->\n```console\noutput\n```\n"},
	} {
		ft := &fatalT{T: t}
		func() {
			defer func() { recover() }()
			parseSession(ft, "demo.md", tt.readme, "absent")
		}()
		if !ft.failed {
			t.Errorf("%s: parseSession did not fail the test", tt.name)
		}
	}
}

// fatalT records a Fatal instead of ending the test.
type fatalT struct {
	*testing.T
	failed bool
}

func (f *fatalT) Fatalf(string, ...any) { f.failed = true; panic("fatal") }

func TestDocSession(t *testing.T) {
	if steps := DocSession(t, "README.md", "grpcurl-session"); len(steps) == 0 || !strings.HasPrefix(steps[0].Cmd, "grpcurl ") {
		t.Errorf("the README's grpcurl session: %q", steps)
	}
	if steps := DocSession(t, "docs/security.md", "security-session"); len(steps) == 0 || !strings.HasPrefix(steps[0].Cmd, "cd ") {
		t.Errorf("docs/security.md's session: %q", steps)
	}
}
