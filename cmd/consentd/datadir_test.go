package main

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/consentd/consentd/internal/daemontest"
)

// servingLine is what the start line says of the embedded store's directory.
type servingLine struct {
	Msg      string
	DataDir  string `json:"data_dir"`
	NewStore *bool  `json:"new_store"`
}

// startLine returns the "consentd serving" line of d's log.
func startLine(t *testing.T, d *daemontest.Daemon) servingLine {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(d.Logs()))
	for sc.Scan() {
		var l servingLine
		if json.Unmarshal(sc.Bytes(), &l) == nil && l.Msg == "consentd serving" {
			return l
		}
	}
	t.Fatalf("no start line in:\n%s", d.Logs())
	return servingLine{}
}

// TestDataDirLogged: the start line names the embedded store's directory as
// an absolute path, however --data-dir gave it (a relative one is in the
// working directory), and says whether the store in it is new: a consentd
// started from another directory than usual shows that it made a new, empty
// store, whether it made the directory (the first two cases) or found it
// empty (the last, as with --data-dir "$(mktemp -d)").
func TestDataDirLogged(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		exists bool   // the directory exists before the first start
		want   []bool // new_store at each start
	}{
		{"a new directory", false, []bool{true, false}},
		{"an existing empty directory", true, []bool{true, false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			if tc.exists {
				if err := os.Mkdir(dir, 0o700); err != nil {
					t.Fatal(err)
				}
			}
			rel, err := filepath.Rel(wd, dir)
			if err != nil || filepath.IsAbs(rel) {
				t.Fatalf("no relative path from %s to %s: %v", wd, dir, err)
			}
			for i, want := range tc.want {
				d := daemontest.Start(t, "--data-dir", rel)
				l := startLine(t, d)
				if l.DataDir != dir || l.NewStore == nil || *l.NewStore != want {
					t.Errorf("start %d with --data-dir %s: data_dir %q, new_store %v; want %q, %v", i+1, rel, l.DataDir, l.NewStore, dir, want)
				}
				if code := d.Stop(t); code != 0 {
					t.Fatalf("exit %d after SIGTERM", code)
				}
			}
		})
	}
}

// TestDataDirUnusable: a --data-dir that cannot be created, or written, stops
// consentd before it serves, with an error naming the directory, exit 1.
func TestDataDirUnusable(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	readOnly := t.TempDir()
	for _, tc := range []struct {
		name string
		dir  string
		// cmd runs consentd with args.
		cmd  func(args ...string) *exec.Cmd
		want string
	}{
		{"under a regular file", filepath.Join(file, "data"), nil,
			"--data-dir " + filepath.Join(file, "data") + ": cannot create it: mkdir " + file + ": not a directory"},
		{"a regular file", file, nil, "--data-dir " + file + ": not a directory"},
		// Tests run as root, whom permission bits do not stop: a read-only
		// tmpfs, mounted in a mount namespace of consentd's own (gone when
		// it exits), does. Where that cannot be set up, the test fails.
		{"on a read-only file system", readOnly, func(args ...string) *exec.Cmd {
			return exec.Command("unshare", append([]string{"--mount", "--propagation", "private", "sh", "-c",
				`mount -t tmpfs -o ro,size=1m consentd-test "$0" && exec "$@"`, readOnly, daemontest.Binary(t)}, args...)...)
		}, "--data-dir " + readOnly + ": cannot write in it: read-only file system"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"--listen", "127.0.0.1:0", "--data-dir", tc.dir}
			cmd := daemontest.Command(t, args...)
			if tc.cmd != nil {
				cmd = tc.cmd(args...)
			}
			out, _ := cmd.CombinedOutput()
			if code := cmd.ProcessState.ExitCode(); code != 1 || !strings.Contains(string(out), tc.want) || strings.Contains(string(out), "consentd serving") {
				t.Errorf("exit %d, output:\n%s\nwant exit 1, no serving, and %q", code, out, tc.want)
			}
		})
	}
	if mounts, err := os.ReadFile("/proc/self/mountinfo"); err != nil || strings.Contains(string(mounts), " "+readOnly+" ") {
		t.Errorf("the read-only mount outlived consentd (%v): it must be in consentd's own mount namespace", err)
	}
}

// TestSecretMissingBesideStore: a data directory whose store is there but
// whose secret is gone stops consentd, naming the secret file, instead of
// making a new secret under which no stored contact (no withdrawal, no
// erasure) can be found again.
func TestSecretMissingBesideStore(t *testing.T) {
	dir := t.TempDir()
	d := daemontest.Start(t, "--data-dir", dir)
	if code := d.Stop(t); code != 0 {
		t.Fatalf("exit %d after SIGTERM", code)
	}
	secret := filepath.Join(dir, "secret")
	if err := os.Remove(secret); err != nil {
		t.Fatal(err)
	}
	out := daemontest.Refused(t, "--data-dir", dir)
	if want := "--secret-file " + secret + ": missing beside an existing store"; !strings.Contains(out, want) {
		t.Errorf("output:\n%s\nwant %q", out, want)
	}
	if _, err := os.Stat(secret); err == nil {
		t.Error("consentd made a new secret beside the existing store")
	}
}
