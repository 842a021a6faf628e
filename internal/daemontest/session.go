package daemontest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const (
	// sessionTimeout bounds a whole session.
	sessionTimeout = 5 * time.Minute
	// stepEnd is printed after every command of a session, numbered, to
	// split the shell's output by command.
	stepEnd = "\n@@ daemontest: end of step %d @@\n"
)

// A Step is one command of a documented session and the output the
// document shows for it (stdout and stderr together).
type Step struct {
	Cmd  string // continuation lines joined with "\n"
	Want string
}

// DocSession returns the sessions named in doc, a Markdown file of the
// module given by its path from the module root ("README.md",
// "docs/security.md"), one after another: each is marked by the comment
// <!-- name --> on the line right before its ```console block. A line
// "$ CMD" is a command, and lines "> MORE" right after it (">" alone for an
// empty one) continue it, as a shell prompts for them: a line that goes on
// after "\" or a here-document. Any other line is output of the command
// before it. A missing (or repeated) marker or block fails the test.
func DocSession(t testing.TB, doc string, names ...string) []Step {
	t.Helper()
	text, err := os.ReadFile(filepath.Join(ModuleRoot(t), filepath.FromSlash(doc)))
	if err != nil {
		t.Fatal(err)
	}
	var steps []Step
	for _, name := range names {
		steps = append(steps, parseSession(t, doc, string(text), name)...)
	}
	return steps
}

// ModuleRoot returns the module's root directory: the first directory
// holding a go.mod at or above the test's working directory.
func ModuleRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		up := filepath.Dir(dir)
		if up == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = up
	}
}

// parseSession returns the session named name in text, the document doc.
func parseSession(t testing.TB, doc, text, name string) []Step {
	t.Helper()
	marker := "<!-- " + name + " -->"
	_, rest, ok := strings.Cut(text, marker+"\n")
	switch {
	case !ok:
		t.Fatalf("%s has no %s block: it must show the session this test runs", doc, marker)
	case strings.Contains(rest, marker):
		t.Fatalf("%s marks more than one block %s", doc, marker)
	}
	block, ok := strings.CutPrefix(rest, "```console\n")
	if !ok {
		t.Fatalf("%s: %s is not followed by a ```console block", doc, marker)
	}
	block, _, _ = strings.Cut(block, "\n```")
	var steps []Step
	output := false // the current step has output already
	for _, line := range strings.Split(block, "\n") {
		if cmd, ok := strings.CutPrefix(line, "$ "); ok {
			steps = append(steps, Step{Cmd: cmd})
			output = false
			continue
		}
		if len(steps) == 0 {
			t.Fatalf("%s: the %s block starts with output: %q", doc, name, line)
		}
		s := &steps[len(steps)-1]
		if more, ok := strings.CutPrefix(line, ">"); ok && !output && (more == "" || more[0] == ' ') {
			s.Cmd += "\n" + strings.TrimPrefix(more, " ")
			continue
		}
		if output {
			s.Want += "\n"
		}
		s.Want += line
		output = true
	}
	return steps
}

// A Shell runs a session's commands, in order, in one sh (so files,
// variables and the directory carry from one command to the next, as in a
// terminal), and compares each command's output with the document's.
//
// The shell starts in an empty directory that stands for the reader's clone
// of the repository, and a session must leave it empty: one that writes
// files moves to a scratch directory first (cd "$(mktemp -d)"), so that a
// reader who follows it leaves no file behind for git to see. TMPDIR points
// into the test's own temporary directory, so mktemp's directories go when
// the test ends.
type Shell struct {
	Env []string // added to the test's environment, e.g. CONSENTD_ADDR
	// Replace maps text in the document's commands to what runs instead:
	// its addresses to a test daemon's, "go run ./cmd/x" to the path of a
	// built x. Outputs are mapped back before they are compared, so what
	// replaces must be distinctive: an address, a path.
	Replace map[string]string
	// Normalise, when set, is applied to the document's output and to the
	// actual output before they are compared: placeholders for what varies
	// from run to run (times, ids). Consistency tokens are named by Run
	// itself (ConsistencyTokenNames).
	Normalise func(string) string
}

// Run runs steps and reports every command whose output differs from the
// document's, and any file the session left in the directory it started in.
func (sh Shell) Run(t testing.TB, steps []Step) {
	t.Helper()
	toRun, back := replacers(sh.Replace)
	var script strings.Builder
	for i, s := range steps {
		end := strings.ReplaceAll(fmt.Sprintf(stepEnd, i), "\n", `\n`) // for printf
		fmt.Fprintf(&script, "%s\nprintf '%s'\n", toRun.Replace(s.Cmd), end)
	}
	path := filepath.Join(t.TempDir(), "session.sh")
	if err := os.WriteFile(path, []byte(script.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), sessionTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", path)
	clone := t.TempDir()
	cmd.Dir = clone
	cmd.Env = append(append(os.Environ(), "TMPDIR="+t.TempDir()), sh.Env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out // one pipe: the output in the order it was written
	if err := cmd.Run(); err != nil {
		t.Errorf("the session's shell: %v", err)
	}
	normalise := sh.Normalise
	if normalise == nil {
		normalise = func(s string) string { return s }
	}
	rest := out.String()
	// Each side names its own consistency tokens, before Normalise sees
	// them: the names match where the document repeats a token as the run
	// does.
	var docTokens, runTokens ConsistencyTokenNames
	for i, s := range steps {
		end := fmt.Sprintf(stepEnd, i)
		got, after, ok := strings.Cut(rest, end)
		if !ok {
			t.Fatalf("the session stopped in step %d:\n$ %s\n%s", i+1, s.Cmd, rest)
		}
		rest = after
		got = normalise(runTokens.Replace(back.Replace(strings.TrimRight(got, "\n"))))
		want := normalise(docTokens.Replace(strings.TrimRight(s.Want, "\n")))
		if got != want {
			t.Errorf("$ %s\n(-document +got):\n%s", s.Cmd, cmp.Diff(want, got))
		}
	}
	left, err := os.ReadDir(clone)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range left {
		t.Errorf("the session left %s in the directory it started in: a session that writes files starts with cd \"$(mktemp -d)\"", e.Name())
	}
}

// replacers returns a replacer for replace and one for its inverse, each
// trying longer strings first, so one address that is a prefix of another
// does not break it.
func replacers(replace map[string]string) (forth, back *strings.Replacer) {
	var olds []string
	for old := range replace {
		olds = append(olds, old)
	}
	slices.SortFunc(olds, func(a, b string) int { return len(b) - len(a) })
	var f []string
	for _, old := range olds {
		f = append(f, old, replace[old])
	}
	slices.SortFunc(olds, func(a, b string) int { return len(replace[b]) - len(replace[a]) })
	var b []string
	for _, old := range olds {
		b = append(b, replace[old], old)
	}
	return strings.NewReplacer(f...), strings.NewReplacer(b...)
}

// Build builds the commands pkgs (package paths as `go build` takes them,
// relative to the test's package directory) into a fresh directory and
// returns it; each binary is named for its package (dir/consentctl for
// ../../cmd/consentctl), for a Shell's Replace.
func Build(t testing.TB, pkgs ...string) string {
	t.Helper()
	dir := t.TempDir()
	if err := goBuild(append([]string{"-o", dir + string(filepath.Separator)}, pkgs...)...); err != nil {
		t.Fatal(err)
	}
	return dir
}
