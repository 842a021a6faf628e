package main

import (
	"path/filepath"
	"regexp"
	"testing"

	"github.com/consentd/consentd/internal/daemontest"
)

// TestReadmeSession runs the README's "Filtering an ad audience" session
// (the console block after <!-- audience-session -->), in one shell as
// printed, against a fresh consentd. `go run ./cmd/consentctl` and `go run
// ./examples/audience` run those commands built once for the test; they find
// consentd through CONSENTD_ADDR. How long the run took, and so its rate,
// differ from run to run: they read as placeholders on both sides.
func TestReadmeSession(t *testing.T) {
	steps := daemontest.ReadmeSession(t, "audience-session")
	bin := daemontest.Build(t, "../../cmd/consentctl", ".")
	d := daemontest.Start(t, "--data-dir", t.TempDir())
	timing := regexp.MustCompile(`(?m)^(audience: [0-9,]+ contacts) in \S+ \([0-9,]+/s\)`)
	daemontest.Shell{
		Env: []string{"CONSENTD_ADDR=" + d.Addr},
		Replace: map[string]string{
			"go run ./cmd/consentctl":    filepath.Join(bin, "consentctl"),
			"go run ./examples/audience": filepath.Join(bin, "audience"),
		},
		Normalise: func(s string) string {
			return daemontest.NormaliseConsistencyTokens(timing.ReplaceAllString(s, "$1 in TIME (RATE/s)"))
		},
	}.Run(t, steps)
}
