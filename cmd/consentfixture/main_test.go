package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/consentd/consentd/internal/importfixture"
)

func TestRun(t *testing.T) {
	now := time.Date(2026, 11, 28, 17, 0, 0, 0, time.UTC)
	erase := filepath.Join(t.TempDir(), "erase.txt")
	var stdout, stderr bytes.Buffer
	if code := run(t.Context(), []string{"-rows", "2000", "-seed", "5", "-erase", erase}, &stdout, &stderr, now); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	var want bytes.Buffer
	exp, err := importfixture.Generate(&want, importfixture.Options{Rows: 2000, Seed: 5, Now: now, Format: "csv"})
	if err != nil {
		t.Fatal(err)
	}
	if stdout.String() != want.String() {
		t.Error("stdout is not the fixture Generate writes for the same options")
	}
	b, err := os.ReadFile(erase)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(exp.Erase, strings.Fields(string(b))); diff != "" {
		t.Errorf("-erase file (-want +got):\n%s", diff)
	}
}

func TestRunRefuses(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-rows", "5"}, "Rows must be at least"},
		{[]string{"-format", "xml"}, `unknown format "xml"`},
		{[]string{"extra"}, `unexpected argument "extra"`},
		{[]string{"-nope"}, "flag provided but not defined"},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		code := run(t.Context(), tt.args, &stdout, &stderr, time.Now())
		if code != 2 || !strings.Contains(stderr.String(), tt.want) {
			t.Errorf("%q: exit %d, stderr %q; want 2 and %q", tt.args, code, stderr.String(), tt.want)
		}
	}
}
