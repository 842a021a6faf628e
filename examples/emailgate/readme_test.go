package main

import (
	"os"
	"regexp"
	"testing"

	"github.com/consentd/consentd/internal/daemontest"
)

// TestReadmeSession runs the "Gating an email campaign" session of
// docs/senders.md (the console blocks after <!-- emailgate-session --> and
// <!-- emailgate-unsubscribe-session -->, in that order), in one shell as
// printed, against a fresh consentd with --http. consentctl and emailgate
// on the shell's PATH are built once for the test; they find consentd
// through CONSENTD_ADDR, and the page's link base stands for the daemon's
// HTTP address. Dates, Message-IDs and link tokens
// (which the README cuts short with "…") differ from run to run: they read
// as placeholders on both sides.
func TestReadmeSession(t *testing.T) {
	steps := daemontest.DocSession(t, "docs/senders.md", "emailgate-session", "emailgate-unsubscribe-session")
	bin := daemontest.Build(t, "../../cmd/consentctl", ".")
	d := daemontest.Start(t, "--http", "127.0.0.1:0", "--data-dir", t.TempDir())
	varying := []struct {
		re          *regexp.Regexp
		placeholder string
	}{
		{regexp.MustCompile(`(?m)^From (\S+) [A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4}$`), "From $1 DATE"},
		{regexp.MustCompile(`(?m)^Date: .*$`), "Date: DATE"},
		{regexp.MustCompile(`(?m)^Message-ID: <[^@>]+@`), "Message-ID: <ID@"},
		{regexp.MustCompile(`/unsubscribe/[A-Za-z0-9_-]+…?`), "/unsubscribe/TOKEN"},
	}
	daemontest.Shell{
		Env: []string{
			"PATH=" + bin + string(os.PathListSeparator) + os.Getenv("PATH"),
			"CONSENTD_ADDR=" + d.Addr,
		},
		Replace: map[string]string{"127.0.0.1:8080": d.HTTP},
		Normalise: func(s string) string {
			for _, v := range varying {
				s = v.re.ReplaceAllString(s, v.placeholder)
			}
			return s
		},
	}.Run(t, steps)
}
