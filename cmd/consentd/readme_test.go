package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestReadmeSession runs the README's grpcurl session, command by command,
// against a fresh consentd, and compares every output with the README's text.
func TestReadmeSession(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	bin := tools(t, root)
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	steps := session(t, string(readme))
	if len(steps) < 8 {
		t.Fatalf("README session has %d commands, want the full grant/check/withdraw/erase story", len(steps))
	}
	d := startDaemon(t, "--listen", "127.0.0.1:0", "--data-dir", t.TempDir())
	for _, s := range steps {
		cmdline := strings.ReplaceAll(s.cmd, "127.0.0.1:50051", d.addr)
		cmd := exec.Command("sh", "-c", cmdline)
		cmd.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))
		out, _ := cmd.CombinedOutput()
		if got := strings.TrimRight(string(out), "\n"); got != s.want {
			t.Errorf("$ %s\ngot:\n%s\nREADME says:\n%s", s.cmd, got, s.want)
		}
	}
}

type step struct{ cmd, want string }

// session parses the console block after the grpcurl-session marker.
func session(t *testing.T, readme string) []step {
	_, block, ok := strings.Cut(readme, "<!-- grpcurl-session -->\n```console\n")
	if !ok {
		t.Fatal("README has no grpcurl-session block")
	}
	block, _, _ = strings.Cut(block, "\n```")
	var steps []step
	for _, line := range strings.Split(block, "\n") {
		if cmd, ok := strings.CutPrefix(line, "$ "); ok {
			steps = append(steps, step{cmd: cmd})
			continue
		}
		if len(steps) == 0 {
			t.Fatalf("README session starts with output: %q", line)
		}
		s := &steps[len(steps)-1]
		if s.want != "" {
			s.want += "\n"
		}
		s.want += line
	}
	return steps
}

// tools returns the directory holding grpcurl and grpc-health-probe,
// building them from the tools module when they are not there yet.
func tools(t *testing.T, root string) string {
	t.Helper()
	bin := filepath.Join(root, ".bin")
	missing := false
	for _, name := range []string{"grpcurl", "grpc-health-probe"} {
		if _, err := os.Stat(filepath.Join(bin, name)); err != nil {
			missing = true
		}
	}
	if missing {
		cmd := exec.Command("go", "build", "-o", bin+string(filepath.Separator),
			"github.com/fullstorydev/grpcurl/cmd/grpcurl", "github.com/grpc-ecosystem/grpc-health-probe")
		cmd.Dir = filepath.Join(root, "tools")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			t.Fatalf("building grpcurl and grpc-health-probe: %v\n%s", err, out.String())
		}
	}
	return bin
}
