package main

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/consentd/consentd/internal/daemontest"
)

// TestSecurityReadmeSession runs the sessions of docs/security.md (the
// console blocks after <!-- security-session --> and
// <!-- security-token-session -->, in that order) in one shell as printed:
// certificates, a policy, consentd started in the background with mTLS,
// calls allowed and refused, then consentd again with bearer tokens and a
// rate limit. consentd and consentctl on the shell's PATH are built for the
// test; consentd listens on a Unix socket of the test's (CONSENTD_LISTEN,
// with consentctl's CONSENTD_ADDR), not on the page's port, and records
// its PID so the test kills it whatever becomes of the session. Retry times
// vary from run to run: they read as a placeholder on both sides.
func TestSecurityReadmeSession(t *testing.T) {
	steps := daemontest.DocSession(t, "docs/security.md", "security-session", "security-token-session")
	bin := daemontest.Build(t, ".", "../consentd")
	dir := shortTempDir(t) // a socket's path must be short
	sock := "unix:" + filepath.Join(dir, "consentd.sock")
	pids := filepath.Join(dir, "pids")
	path := filepath.Join(dir, "bin")
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	consentd := filepath.Join(bin, "consentd")
	wrapper := "#!/bin/sh\necho $$ >> '" + pids + "'\nexec '" + consentd + "' \"$@\"\n"
	if err := os.WriteFile(filepath.Join(path, "consentd"), []byte(wrapper), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(bin, "consentctl"), filepath.Join(path, "consentctl")); err != nil {
		t.Fatal(err)
	}
	// Before the session's directory is removed, and again at cleanup for
	// a test that stopped early.
	defer killRecorded(t, pids, consentd)
	t.Cleanup(func() { killRecorded(t, pids, consentd) })

	retry := regexp.MustCompile(`retry in [0-9.]+[a-zµ]+`)
	daemontest.Shell{
		Env: []string{
			"PATH=" + path + string(os.PathListSeparator) + os.Getenv("PATH"),
			"CONSENTD_LISTEN=" + sock, "CONSENTD_ADDR=" + sock,
			// The reader's shell has none of consentctl's credentials.
			caEnv + "=", certEnv + "=", keyEnv + "=", bearerEnv + "=",
		},
		Replace: map[string]string{"127.0.0.1:50051": sock},
		Normalise: func(s string) string {
			return retry.ReplaceAllString(s, "retry in D")
		},
	}.Run(t, steps)
}

// killRecorded kills each consentd whose PID the wrapper recorded in pids
// and that still runs exe (a PID of a process that ended may be reused).
func killRecorded(t *testing.T, pids, exe string) {
	b, err := os.ReadFile(pids)
	if err != nil {
		return // none started
	}
	for _, f := range strings.Fields(string(b)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			t.Errorf("%s: %q is not a PID", pids, f)
			continue
		}
		if running, err := os.Readlink("/proc/" + f + "/exe"); err != nil || running != exe {
			continue
		}
		p, err := os.FindProcess(pid)
		if err != nil {
			continue
		}
		if err := p.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
			t.Errorf("killing consentd %d: %v", pid, err)
		}
	}
}
