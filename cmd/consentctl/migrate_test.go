package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/consentd/consentd/internal/daemontest"
	"github.com/consentd/consentd/internal/redistest"
)

// today is a store written by the version before issue 17, with the
// identifiers it was written with (internal/migrate/testdata/today).
const today = "../../internal/migrate/testdata/today"

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestMigrateToday: consentd refuses a store written by the version before
// issue 17, naming the command; consentctl migrate's dry run reports and
// writes nothing; --apply merges the spellings, keeping the withdrawal and
// the erasure; consentd then serves the store, answering the same for
// every spelling, and its history verifies; a second --apply writes
// nothing.
func TestMigrateToday(t *testing.T) {
	contacts := filepath.Join(today, "contacts.txt")
	for _, tc := range []struct {
		name  string
		store func(t *testing.T) (flags []string, wantCommand string)
	}{
		{"embedded", func(t *testing.T) ([]string, string) {
			dir := t.TempDir()
			copyFile(t, filepath.Join(today, "embedded", "consent.db"), filepath.Join(dir, "consent.db"))
			copyFile(t, filepath.Join(today, "embedded", "secret"), filepath.Join(dir, "secret"))
			return []string{"--data-dir", dir}, "consentctl migrate --data-dir " + dir + " --contacts FILE"
		}},
		{"redis", func(t *testing.T) ([]string, string) {
			srv := redistest.StartFromDump(t, filepath.Join(today, "redis", "dump.rdb"))
			secret := filepath.Join(t.TempDir(), "secret")
			copyFile(t, filepath.Join(today, "redis", "secret"), secret)
			url := "redis://" + srv.Addr() + "/0"
			return []string{"--redis", url, "--secret-file", secret}, "consentctl migrate --redis " + url + " --secret-file " + secret + " --contacts FILE"
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			flags, wantCommand := tc.store(t)
			if out := daemontest.Refused(t, flags...); !strings.Contains(out, wantCommand) || !strings.Contains(out, "--apply") {
				t.Fatalf("consentd on the unmigrated store said:\n%s\nwant it to name %q", out, wantCommand)
			}

			migrate := func(extra ...string) result {
				t.Helper()
				r := ctl(t, nil, append(append([]string{"migrate", "--contacts", contacts}, flags...), extra...)...)
				if r.code != 0 || r.stderr != "" {
					t.Fatalf("consentctl migrate %v: exit %d, stderr %q", extra, r.code, r.stderr)
				}
				for _, raw := range []string{"7946", "bücher", "xn--", "example"} {
					if strings.Contains(r.stdout, raw) {
						t.Errorf("the report names an identifier (%q):\n%s", raw, r.stdout)
					}
				}
				return r
			}
			dry := migrate()
			for _, want := range []string{
				"dry run: nothing written",
				"lines 1,2 (phone): would merge 1 other spelling into the canonical identifier; withdrawn at migration time: email_marketing",
				"lines 5,6 (email): would merge 1 other spelling into the canonical identifier; withdrawn at migration time: email_marketing",
				"lines 7,8 (phone): would merge 1 other spelling into the canonical identifier; erased at migration time",
				"not parsed: line 10: contact: ",
				"ask again: line 1, email_marketing: its yes lost to a withdrawal under another spelling",
				"ask again: line 8, email_marketing: its yes lost to an erasure under another spelling",
				"9 records in the store, 0 reached by no line; the current layout would be stamped last",
			} {
				if !strings.Contains(dry.stdout, want) {
					t.Errorf("dry run: missing %q in:\n%s", want, dry.stdout)
				}
			}
			// Nothing was written: consentd still refuses the store.
			daemontest.Refused(t, flags...)

			applied := migrate("--apply", "--json")
			var rep struct {
				Applied bool `json:"applied"`
				Writes  int  `json:"writes"`
			}
			if err := json.Unmarshal([]byte(applied.stdout), &rep); err != nil || !rep.Applied || rep.Writes != 9 {
				t.Fatalf("--apply --json: %v, %+v; want applied, 9 writes:\n%s", err, rep, applied.stdout)
			}

			d := daemontest.Start(t, flags...)
			for _, tt := range []struct{ contact, purpose, want string }{
				{"+44 20 7946 0958", "email_marketing", "deny (withdrawn)"},
				{"+442079460958", "email_marketing", "deny (withdrawn)"},
				{"lena@bücher.example", "email_marketing", "deny (withdrawn)"},
				{"lena@xn--bcher-kva.example", "email_marketing", "deny (withdrawn)"},
				{"+44 161 496 0000", "email_marketing", "deny (erased)"},
				{"+441614960000", "email_marketing", "deny (erased)"},
				{"Ada@Example.COM", "email_marketing", "allow (granted)"},
				{"grace@example.org", "email_marketing", "allow (granted)"},
			} {
				r := at(t, d.Addr, "check", tt.contact, tt.purpose)
				if wantCode := map[bool]int{true: exitOK, false: exitDenied}[strings.HasPrefix(tt.want, "allow")]; !strings.HasPrefix(r.stdout, tt.want+":") || r.code != wantCode {
					t.Errorf("check %s %s: got %q (exit %d, stderr %q), want %q", tt.contact, tt.purpose, r.stdout, r.code, r.stderr, tt.want)
				}
			}
			if out := mustRun(t, d.Addr, "verify"); !strings.HasPrefix(out, "history intact") {
				t.Errorf("verify after the migration: %s", out)
			}
			if code := d.Stop(t); code != 0 {
				t.Fatalf("consentd exit %d after SIGTERM", code)
			}

			again := migrate("--apply")
			if !strings.Contains(again.stdout, "0 to merge, 3 merged before") || !strings.Contains(again.stdout, "; 0 writes;") {
				t.Errorf("second --apply:\n%s\nwant 3 groups merged before and 0 writes", again.stdout)
			}
		})
	}
}
