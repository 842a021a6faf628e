package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// withdrawnAnswer is what consentctl check prints for a withdrawn purpose.
const withdrawnAnswer = "deny (withdrawn): the latest event for this purpose is a withdrawal\n"

// TestSpellingsAreOneContact: consentctl grant in one spelling, withdraw in
// another, against a real consentd (--default-region GB) on each store:
// check answers withdrawn under every spelling.
func TestSpellingsAreOneContact(t *testing.T) {
	cases := []struct {
		name  string
		forms []string // granted, withdrawn, then other spellings checked
	}{
		{"phone", []string{"+44 20 7946 0958", "+442079460958", "020 7946 0958", "(020) 7946-0958"}},
		{"email case", []string{"Ada@Example.COM", "ada@example.com", " ADA@EXAMPLE.com"}},
		{"IDN domain", []string{"ada@bücher.example", "ada@xn--bcher-kva.example", "Ada@BÜCHER.example"}},
		{"external id", []string{"CRM:12345", "crm:12345"}},
	}
	for _, b := range backends("--default-region", "GB") {
		t.Run(b.name, func(t *testing.T) {
			addr := b.start(t)
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					mustRun(t, addr, "grant", tc.forms[0], "email_marketing", "--method", "checkbox")
					mustRun(t, addr, "withdraw", tc.forms[1], "email_marketing")
					for _, form := range tc.forms {
						if r := at(t, addr, "check", form, "email_marketing"); r.code != 1 || r.stdout != withdrawnAnswer {
							t.Errorf("check %q: exit %d, %q %q; want exit 1, %q", form, r.code, r.stdout, r.stderr, withdrawnAnswer)
						}
					}
				})
			}
		})
	}
}

// TestImportSpellingsAreOneContact: a file that grants in one spelling and
// withdraws in another imports as one contact per identifier, on each
// store: check answers withdrawn under every spelling. A row whose contact
// hides a zero-width or bidi character is rejected naming the rule, and a
// national number without --default-region is rejected naming the flag.
func TestImportSpellingsAreOneContact(t *testing.T) {
	recent := time.Now().AddDate(0, -2, 0).Format(time.DateOnly)
	input := `contact,purpose,status,method,captured_at
+44 20 7946 0958,email_marketing,granted,checkbox,` + recent + `
Ada@Example.COM,email_marketing,granted,checkbox,` + recent + `
ada@bücher.example,email_marketing,granted,checkbox,` + recent + `
zoe@example.com,email_marketing,granted,checkbox,` + recent + `
020 7946 0958,email_marketing,withdrawn,,
ada@example.com,email_marketing,withdrawn,,
ada@xn--bcher-kva.example,email_marketing,withdrawn,,
zoe` + "\u200b" + `@example.com,email_marketing,withdrawn,,
` + "\u202e" + `zoe@example.com,email_marketing,withdrawn,,
`
	const invisible = "contact: must not contain invisible or bidirectional control characters (zero-width, bidi marks)"
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			addr := b.start(t)
			dir := t.TempDir()
			file := filepath.Join(dir, "crm.csv")
			if err := os.WriteFile(file, []byte(input), 0o644); err != nil {
				t.Fatal(err)
			}
			// Without --default-region the national number is refused, naming
			// the flag; nothing is written (a dry run).
			dry := at(t, addr, "import", file, "--dry-run", "--out", filepath.Join(dir, "dry"))
			if dry.code != 0 {
				t.Fatalf("dry run: exit %d, stderr %q", dry.code, dry.stderr)
			}
			rejects, err := os.ReadFile(filepath.Join(dir, "dry", "rejects.csv"))
			if err != nil {
				t.Fatal(err)
			}
			if want := "6,\"contact: phone number without + and country code needs a default region (consentd --default-region, e.g. GB)\"\n"; !strings.Contains(string(rejects), want) {
				t.Errorf("dry run rejects.csv:\n%s\nwant a line %q", rejects, want)
			}

			if r := at(t, addr, "import", file, "--default-region", "GB"); r.code != 0 {
				t.Fatalf("import: exit %d, stderr %q", r.code, r.stderr)
			}
			rejects, err = os.ReadFile(file + ".report/rejects.csv")
			if err != nil {
				t.Fatal(err)
			}
			if want := "line,reason\n9,\"" + invisible + "\"\n10,\"" + invisible + "\"\n"; string(rejects) != want {
				t.Errorf("rejects.csv:\n%s\nwant\n%s", rejects, want)
			}
			// (This consentd has no --default-region: the national form is
			// the import's alone to read.)
			for _, form := range []string{"+44 20 7946 0958", "+442079460958", "Ada@Example.COM", "ada@example.com",
				"ada@bücher.example", "ada@xn--bcher-kva.example"} {
				if r := at(t, addr, "check", form, "email_marketing"); r.code != 1 || r.stdout != withdrawnAnswer {
					t.Errorf("check %q: exit %d, %q %q; want exit 1, %q", form, r.code, r.stdout, r.stderr, withdrawnAnswer)
				}
			}
			// The rejected withdrawals changed nothing: zoe's yes stands.
			if r := at(t, addr, "check", "zoe@example.com", "email_marketing"); r.code != 0 || !strings.HasPrefix(r.stdout, "allow (granted)") {
				t.Errorf("check zoe: exit %d, %q %q; want allow", r.code, r.stdout, r.stderr)
			}
			if r := at(t, addr, "import", file, "--default-region", "UK"); r.code == 0 || !strings.Contains(r.stderr, `--default-region: "UK" is not a known region code`) {
				t.Errorf("import --default-region UK: exit %d, stderr %q; want a refusal naming the flag", r.code, r.stderr)
			}
		})
	}
}
