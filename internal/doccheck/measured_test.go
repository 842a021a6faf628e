package doccheck

import (
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// measured lists the pages that quote measured figures, each with the
// command that regenerates its files, which the page must show.
var measured = map[string]string{
	"docs/benchmarks.md":  "go run ./cmd/consentbench --out docs/benchmarks",
	"docs/reliability.md": "go run ./cmd/consentbench soak --duration 10m --out soak-out",
}

var (
	commitSpan = regexp.MustCompile("`([0-9a-f]{7,40})`")
	date       = regexp.MustCompile(`\b20\d\d-[01]\d-[0-3]\d\b`)
)

// TestMeasuredFiguresNameTheirCode: a page of measured figures says which
// commit and which date they come from, each commit it names is one of the
// repository's history, and it shows the command that makes its files.
func TestMeasuredFiguresNameTheirCode(t *testing.T) {
	for doc, command := range measured {
		text := read(t, doc)
		commits := commitSpan.FindAllStringSubmatch(text, -1)
		if len(commits) == 0 {
			t.Errorf("%s names no commit (as `abc1234`) its figures come from", doc)
		}
		if !date.MatchString(text) {
			t.Errorf("%s names no date (YYYY-MM-DD) its figures come from", doc)
		}
		if !strings.Contains(text, command) {
			t.Errorf("%s does not show the command that regenerates it: %s", doc, command)
		}
		for _, c := range commits {
			cmd := exec.Command("git", "cat-file", "-e", c[1]+"^{commit}")
			cmd.Dir = root
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("%s names commit %s, which is not in the repository's history: %v %s", doc, c[1], err, out)
			}
		}
	}
}
