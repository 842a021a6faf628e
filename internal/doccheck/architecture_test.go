package doccheck

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

const module = "github.com/consentd/consentd"

// TestArchitectureNamesEveryPackage: docs/architecture.md places every
// package of the module, by its directory in a code span (`store/` or
// `store`), so a package added without a word there fails.
func TestArchitectureNamesEveryPackage(t *testing.T) {
	cmd := exec.Command("go", "list", "-e", "./...")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list ./...: %v", err)
	}
	named := namedPaths(read(t, "docs/architecture.md"))
	n := 0
	for _, pkg := range strings.Fields(string(out)) {
		dir, ok := strings.CutPrefix(pkg, module+"/")
		if !ok {
			t.Errorf("go list reports %s, outside the module", pkg)
			continue
		}
		n++
		if !named[dir] {
			t.Errorf("docs/architecture.md does not name package %s (as `%s/`): say what it owns", pkg, dir)
		}
	}
	if n < 20 {
		t.Errorf("go list reports only %d packages; is it run from the module?", n)
	}
}

// TestArchitecturePathsExist: every path docs/architecture.md names in a
// code span exists (a glob such as `cmd/*` matches something).
func TestArchitecturePathsExist(t *testing.T) {
	for p := range namedPaths(read(t, "docs/architecture.md")) {
		matches, err := filepath.Glob(filepath.Join(root, filepath.FromSlash(p)))
		if err != nil || len(matches) == 0 {
			t.Errorf("docs/architecture.md names %s, which does not exist", p)
		}
	}
}

// pathSpan matches a code span that reads as a path of the module: a
// top-level directory of it and more, without spaces.
var pathSpan = regexp.MustCompile(`^(bench|cache|client|cmd|consent|deploy|docs|examples|internal|proto|scripts|server|store|tools)(/[A-Za-z0-9_.*-]*)*$`)

// namedPaths returns the paths named in the prose of text's code spans,
// without a trailing slash.
func namedPaths(text string) map[string]bool {
	prose, _ := split(text)
	out := map[string]bool{}
	for _, s := range spans(prose) {
		if pathSpan.MatchString(s) {
			out[strings.TrimSuffix(s, "/")] = true
		}
	}
	return out
}

func TestNamedPaths(t *testing.T) {
	text := "`consent/` owns, `internal/daemon` wires, `cmd/*` and `store/plan.go`; not `consent.Decide`, `consent.v1`, `{p}:i`, `go list ./...`.\n```\nserver → `cache`\n```\n"
	got := namedPaths(text)
	want := map[string]bool{"consent": true, "internal/daemon": true, "cmd/*": true, "store/plan.go": true}
	if len(got) != len(want) {
		t.Errorf("namedPaths = %v, want %v", got, want)
	}
	for p := range want {
		if !got[p] {
			t.Errorf("namedPaths = %v, want %v", got, want)
		}
	}
}
