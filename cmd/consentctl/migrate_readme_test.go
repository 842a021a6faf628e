package main

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/consentd/consentd/internal/daemontest"
)

// TestMigrateReadmeSession runs the session of docs/migrating-identifiers.md
// (the console block after <!-- migrate-session -->) in a shell, as
// printed: consentd refusing a copy of the store written before issue 17,
// the dry run, --apply, and --apply again. The copy's directory, made by
// mktemp, reads as DATA.
func TestMigrateReadmeSession(t *testing.T) {
	steps := daemontest.DocSession(t, "docs/migrating-identifiers.md", "migrate-session")
	bin := daemontest.Build(t, ".", "../consentd")
	testdata, err := filepath.Abs(today)
	if err != nil {
		t.Fatal(err)
	}
	scratch := regexp.MustCompile(`/\S*/tmp\.[A-Za-z0-9]+`)
	daemontest.Shell{
		Env:       []string{"PATH=" + bin + string(os.PathListSeparator) + os.Getenv("PATH")},
		Replace:   map[string]string{"internal/migrate/testdata/today": testdata},
		Normalise: func(s string) string { return scratch.ReplaceAllString(s, "DATA") },
	}.Run(t, steps)
}
