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

// A Step is one command of a README session and the output the README shows
// for it (stdout and stderr together).
type Step struct {
	Cmd  string // continuation lines joined with "\n"
	Want string
}

// ReadmeSession returns the sessions named in the module's README.md, one
// after another: each is marked by the comment <!-- name --> on the line
// right before its ```console block. A line "$ CMD" is a command, and lines
// "> MORE" right after it (">" alone for an empty one) continue it, as a
// shell prompts for them: a line that goes on after "\" or a here-document.
// Any other line is output of the command before it. A missing (or
// repeated) marker or block fails the test.
func ReadmeSession(t testing.TB, names ...string) []Step {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		up := filepath.Dir(dir)
		if up == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = up
	}
	readme, err := os.ReadFile(filepath.Join(dir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var steps []Step
	for _, name := range names {
		steps = append(steps, parseSession(t, string(readme), name)...)
	}
	return steps
}

// parseSession returns the session named name in the README text readme.
func parseSession(t testing.TB, readme, name string) []Step {
	t.Helper()
	marker := "<!-- " + name + " -->"
	_, rest, ok := strings.Cut(readme, marker+"\n")
	switch {
	case !ok:
		t.Fatalf("README has no %s block: the README must show a session this test runs", name)
	case strings.Contains(rest, marker):
		t.Fatalf("README marks more than one block %s", marker)
	}
	block, ok := strings.CutPrefix(rest, "```console\n")
	if !ok {
		t.Fatalf("README: %s is not followed by a ```console block", marker)
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
			t.Fatalf("README's %s block starts with output: %q", name, line)
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

// A Shell runs a session's commands, in order, in one sh in a fresh
// directory (so files, variables and the directory carry from one command to
// the next, as in a terminal), and compares each command's output with the
// README's.
type Shell struct {
	Env []string // added to the test's environment, e.g. CONSENTD_ADDR
	// Replace maps text in the README's commands to what runs instead: the
	// README's addresses to a test daemon's, "go run ./cmd/x" to the path of
	// a built x. Outputs are mapped back before they are compared, so what
	// replaces must be distinctive: an address, a path.
	Replace map[string]string
	// Normalise, when set, is applied to the README's output and to the
	// actual output before they are compared: placeholders for what varies
	// from run to run (times, tokens, ids).
	Normalise func(string) string
}

// Run runs steps and reports every command whose output differs from the
// README's.
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
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), sh.Env...)
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
	for i, s := range steps {
		end := fmt.Sprintf(stepEnd, i)
		got, after, ok := strings.Cut(rest, end)
		if !ok {
			t.Fatalf("the session stopped in step %d:\n$ %s\n%s", i+1, s.Cmd, rest)
		}
		rest = after
		got = normalise(back.Replace(strings.TrimRight(got, "\n")))
		want := normalise(strings.TrimRight(s.Want, "\n"))
		if got != want {
			t.Errorf("$ %s\n(-README +got):\n%s", s.Cmd, cmp.Diff(want, got))
		}
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
