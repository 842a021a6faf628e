package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/consentd/consentd/contactkey"
	"github.com/consentd/consentd/internal/redistest"
)

// TestReadmeSession runs the README's grpcurl session, command by command,
// against a fresh consentd, and compares every output with the README's text.
func TestReadmeSession(t *testing.T) {
	root, readme := readme(t)
	steps := session(t, readme, "grpcurl-session")
	if len(steps) < 8 {
		t.Fatalf("README session has %d commands, want the full grant/check/withdraw/erase story", len(steps))
	}
	d := startDaemon(t, "--listen", "127.0.0.1:0", "--data-dir", t.TempDir())
	runSteps(t, root, steps, map[string]string{"127.0.0.1:50051": d.addr})
}

// TestReadmeRedisSession runs the README's two-sidecar session against two
// consentd processes sharing a test Redis. The secret is chosen so the
// contact lands in the partition the README shows, making tokens match.
func TestReadmeRedisSession(t *testing.T) {
	root, readme := readme(t)
	steps := session(t, readme, "redis-session")
	srv := redistest.Start(t, redistest.Options{})
	secret := filepath.Join(t.TempDir(), "consentd.secret")
	for i := 0; ; i++ {
		s := []byte(fmt.Sprintf("readme-secret-%04d-0123456789", i))
		k, err := contactkey.New(s)
		if err != nil {
			t.Fatal(err)
		}
		if key, _ := k.Key("bo@example.com"); key.Partition(16) == 2 {
			if err := os.WriteFile(secret, s, 0o600); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	args := []string{"--redis", "redis://" + srv.Addr() + "/0", "--secret-file", secret, "--listen", "127.0.0.1:0"}
	a, b := startDaemon(t, args...), startDaemon(t, args...)
	runSteps(t, root, steps, map[string]string{"127.0.0.1:50051": a.addr, "127.0.0.1:50052": b.addr})
}

func readme(t *testing.T) (root, text string) {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	return root, string(b)
}

func runSteps(t *testing.T, root string, steps []step, addrs map[string]string) {
	t.Helper()
	bin := tools(t, root)
	for _, s := range steps {
		cmdline := s.cmd
		for from, to := range addrs {
			cmdline = strings.ReplaceAll(cmdline, from, to)
		}
		cmd := exec.Command("sh", "-c", cmdline)
		cmd.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))
		out, _ := cmd.CombinedOutput()
		if got := strings.TrimRight(string(out), "\n"); got != s.want {
			t.Errorf("$ %s\ngot:\n%s\nREADME says:\n%s", s.cmd, got, s.want)
		}
	}
}

type step struct{ cmd, want string }

// session parses the console block after the marker <!-- name -->.
func session(t *testing.T, readme, name string) []step {
	_, block, ok := strings.Cut(readme, "<!-- "+name+" -->\n```console\n")
	if !ok {
		t.Fatalf("README has no %s block", name)
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
