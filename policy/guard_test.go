package policy

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestGuardReload: Run reloads on a signal and on a changed file, refuses
// a broken file keeping the policy in force, and stops with its context.
func TestGuardReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.json")
	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(path+".tmp", []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".tmp", path); err != nil {
			t.Fatal(err)
		}
	}
	write(`{"callers": {"mailer": {"rpcs": ["Check"], "purposes": ["email_marketing"]}}}`)
	var mu sync.Mutex
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(writerFunc(func(b []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(b)
	}), nil))
	g, err := Load(path, registry, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	hup := make(chan os.Signal, 1)
	var wg sync.WaitGroup
	wg.Go(func() { g.Run(ctx, 10*time.Millisecond, hup) })
	defer func() { cancel(); wg.Wait() }()

	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				mu.Lock()
				defer mu.Unlock()
				t.Fatalf("%s: not after 5s:\n%s", what, logs.String())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	write(`{"callers": {"mailer": {"rpcs": ["Check"], "purposes": ["sales_outreach"]}}}`)
	waitFor("revocation on file change", func() bool { return !g.Policy().AllowPurpose("mailer", "email_marketing") })

	write(`{"callers": {"mailer": {"rpcs": ["Check"], "purposes": ["nope"]}}}`)
	waitFor("broken file refused", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return strings.Contains(logs.String(), `policy reload refused`) && strings.Contains(logs.String(), `unknown purpose \"nope\"`)
	})
	if !g.Policy().AllowPurpose("mailer", "sales_outreach") {
		t.Error("a broken file replaced the policy in force")
	}
	hup <- os.Interrupt // any signal: the daemon sends SIGHUP
	waitFor("reload on signal logged twice", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return strings.Count(logs.String(), "policy reload refused") >= 2
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }
