package main

import (
	"regexp"
	"strings"
	"testing"

	"github.com/consentd/consentd/internal/daemontest"
)

// TestCommandLineRefusedBriefly: a command line the flag parser refuses is
// answered by the consentd binary with the error and one line pointing at
// --help, exit 2, not with the whole usage, which would bury the error.
func TestCommandLineRefusedBriefly(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown flag", []string{"--nope"}, "consentd: flag provided but not defined: --nope"},
		{"unknown flag, one dash", []string{"-nope"}, "consentd: flag provided but not defined: --nope"},
		{"value of the wrong type", []string{"--cache-bytes", "lots"}, `consentd: invalid value "lots" for flag --cache-bytes: parse error`},
		{"flag without its value", []string{"--listen"}, "consentd: flag needs an argument: --listen"},
		{"stray argument", []string{"serve"}, "consentd: unexpected arguments: serve"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := daemontest.Command(t, tc.args...)
			out, _ := cmd.CombinedOutput()
			want := tc.want + "\nRun 'consentd --help' for the flags.\n"
			if code := cmd.ProcessState.ExitCode(); code != 2 || string(out) != want {
				t.Errorf("consentd %s: exit %d, output (%d lines):\n%s\nwant exit 2, output:\n%s", strings.Join(tc.args, " "), code, strings.Count(string(out), "\n"), out, want)
			}
		})
	}
}

// TestHelpSpellsFlagsAsDocsDo: the consentd binary's --help names every flag
// --name, as the docs do, and exits 0.
func TestHelpSpellsFlagsAsDocsDo(t *testing.T) {
	cmd := daemontest.Command(t, "--help")
	out, _ := cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("--help: exit %d, want 0:\n%s", code, out)
	}
	help := string(out)
	flags := regexp.MustCompile(`(?m)^  --[a-z][a-z-]*( |$)`).FindAllString(help, -1)
	if len(flags) < 40 {
		t.Errorf("--help lists %d flags as --name, want every one (40 or more):\n%s", len(flags), help)
	}
	// Any mention of a flag, on its own line or in another's usage, has two
	// dashes.
	if single := regexp.MustCompile(`(^|[\s(])-[a-z][a-z]+-?[a-z-]*\b`).FindAllString(help, -1); len(single) > 0 {
		t.Errorf("--help names flags with one dash: %q", single)
	}
}
