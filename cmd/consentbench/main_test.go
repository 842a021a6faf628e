package main

import (
	"io"
	"slices"
	"testing"
)

func TestParseFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		ok   bool
	}{
		{"defaults", nil, true},
		{"smoke", []string{"--smoke"}, true},
		{"bad rate", []string{"--rates", "1000,fast"}, false},
		{"zero rate", []string{"--rates", "0"}, false},
		{"bad transport", []string{"--transports", "tcp,udp"}, false},
		{"bad store", []string{"--stores", "postgres"}, false},
		{"bad core count", []string{"--gomaxprocs", "0,-1"}, false},
		{"no contacts", []string{"--contacts", "0"}, false},
		{"stray argument", []string{"extra"}, false},
		{"entitlement only", []string{"--scenarios", "entitlement", "--stores", "embedded"}, true},
		{"bad scenario group", []string{"--scenarios", "store,ladder"}, false},
		{"zero entitlement rate", []string{"--entitlement-rate", "0"}, false},
		{"no entitlement rounds", []string{"--entitlement-rounds", "0"}, false},
	} {
		_, err := parseFlags(tc.args, io.Discard)
		if (err == nil) != tc.ok {
			t.Errorf("%s: parseFlags(%q) error %v, want ok=%v", tc.name, tc.args, err, tc.ok)
		}
	}
	c, err := parseFlags([]string{"--smoke"}, io.Discard)
	if err != nil || c.Population.Contacts != 2000 || c.Search.Ceiling != 2000 || c.Pause != 0 || c.EntitlementRate != 200 || c.EntitlementRounds != 2 {
		t.Errorf("--smoke gave %d contacts, ceiling %v, pause %v, entitlement rate %v in %d rounds (err %v); want a tiny, quick run",
			c.Population.Contacts, c.Search.Ceiling, c.Pause, c.EntitlementRate, c.EntitlementRounds, err)
	}
	// The smoke run, and a default one, cover every scenario group.
	if want := []string{"store", "entitlement"}; !slices.Equal(c.Groups, want) {
		t.Errorf("--smoke runs %q, want %q", c.Groups, want)
	}
}
