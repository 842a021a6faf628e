package doccheck

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

var marker = regexp.MustCompile(`^<!-- ([a-z0-9-]+) -->$`)

// TestEveryConsoleSessionIsRun: every console block of the README and docs/
// is a session a test runs: the line before it names it (<!-- name -->),
// and a test of the module asks for that name in that page
// (daemontest.DocSession(t, "docs/x.md", "name")). Output to read but not
// run goes in a text block.
func TestEveryConsoleSessionIsRun(t *testing.T) {
	tests := testSources(t)
	n := 0
	for _, doc := range docs(t) {
		_, blocks := split(read(t, doc))
		for _, b := range blocks {
			if b.info != "console" {
				continue
			}
			m := marker.FindStringSubmatch(b.before)
			if m == nil {
				t.Errorf("%s: a console block without a <!-- name --> line before it, so no test runs it:\n%s", doc, firstLine(b.text))
				continue
			}
			n++
			if !runs(tests, doc, m[1]) {
				t.Errorf("%s: no test runs the session %s (daemontest.DocSession(t, %q, %q))", doc, m[1], doc, m[1])
			}
		}
	}
	if n < 8 {
		t.Errorf("found only %d sessions", n)
	}
}

// docSessionCall finds a call daemontest.DocSession(t, "page", "name", ...)
// and its quoted arguments after t.
var (
	docSessionCall = regexp.MustCompile(`DocSession\(\w+((?:,\s*"[^"]*")+)\)`)
	quoted         = regexp.MustCompile(`"[^"]*"`)
)

// runs reports whether one of the test files in tests calls
// daemontest.DocSession with page doc and the session name among its names.
func runs(tests []string, doc, name string) bool {
	for _, src := range tests {
		for _, call := range docSessionCall.FindAllStringSubmatch(src, -1) {
			args := quoted.FindAllString(call[1], -1)
			if len(args) >= 2 && args[0] == strconv.Quote(doc) && slices.Contains(args[1:], strconv.Quote(name)) {
				return true
			}
		}
	}
	return false
}

// testSources returns the text of every _test.go file of the module.
func testSources(t *testing.T) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, "_test.go") {
			return nil
		}
		// These read sessions to test the reading, and run none.
		if dir := filepath.Base(filepath.Dir(p)); dir == "daemontest" || dir == "doccheck" {
			return nil
		}
		b, err := os.ReadFile(p)
		out = append(out, string(b))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

func TestRuns(t *testing.T) {
	const call = `steps := daemontest.DocSession(t, "docs/security.md", "security-session", "security-token-session")`
	for _, tt := range []struct {
		src, doc, name string
		want           bool
	}{
		{call, "docs/security.md", "security-session", true},
		{call, "docs/security.md", "security-token-session", true},
		{call, "docs/security.md", "security", false},
		{call, "README.md", "security-session", false},
		// Naming the page and the session elsewhere is not running it.
		{`const page = "docs/security.md"; var name = "security-session"`, "docs/security.md", "security-session", false},
		{`DocSession(t, "README.md", "x"); f("docs/security.md", "security-session")`, "docs/security.md", "security-session", false},
	} {
		if got := runs([]string{tt.src}, tt.doc, tt.name); got != tt.want {
			t.Errorf("runs(%q, %s, %s) = %v, want %v", tt.src, tt.doc, tt.name, got, tt.want)
		}
	}
}
