package main

import (
	"os"
	"regexp"
	"testing"

	"github.com/consentd/consentd/internal/daemontest"
)

// TestReadmeSession runs the "Filtering an ad audience" session of
// docs/senders.md (the console block after <!-- audience-session -->), in
// one shell as printed, against a fresh consentd. consentctl and audience
// on the shell's PATH are built once for the test; they find consentd
// through CONSENTD_ADDR. How long the run took, and so its rate,
// differ from run to run: they read as placeholders on both sides.
func TestReadmeSession(t *testing.T) {
	steps := daemontest.DocSession(t, "docs/senders.md", "audience-session")
	bin := daemontest.Build(t, "../../cmd/consentctl", ".")
	d := daemontest.Start(t, "--data-dir", t.TempDir())
	timing := regexp.MustCompile(`(?m)^(audience: [0-9,]+ contacts) in \S+ \([0-9,]+/s\)`)
	daemontest.Shell{
		Env: []string{
			"PATH=" + bin + string(os.PathListSeparator) + os.Getenv("PATH"),
			"CONSENTD_ADDR=" + d.Addr,
		},
		Normalise: func(s string) string {
			return timing.ReplaceAllString(s, "$1 in TIME (RATE/s)")
		},
	}.Run(t, steps)
}
