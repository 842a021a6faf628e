package doccheck

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReadmeCommands: the README shows the two commands a newcomer runs,
// exactly as a shell in the clone takes them, and both are executable
// scripts of the repository; and the README stays a front door.
func TestReadmeCommands(t *testing.T) {
	readme := read(t, "README.md")
	_, blocks := split(readme)
	var first []string
	for _, b := range blocks {
		if b.info == "sh" {
			for _, line := range strings.Split(b.text, "\n") {
				cmd, _, _ := strings.Cut(line, "#")
				first = append(first, strings.TrimSpace(cmd))
			}
			break
		}
	}
	want := []string{"./scripts/run", "./scripts/test"}
	if strings.Join(first, "\n") != strings.Join(want, "\n") {
		t.Errorf("the README's first sh block runs %q, want %q", first, want)
	}
	for _, c := range want {
		fi, err := os.Stat(filepath.Join(root, c))
		if err != nil || fi.Mode()&0o111 == 0 {
			t.Errorf("%s is not an executable script of the repository: %v", c, err)
		}
	}
	if n := strings.Count(readme, "\n"); n > 250 {
		t.Errorf("README.md has %d lines, more than 250: move detail into docs/", n)
	}
}
