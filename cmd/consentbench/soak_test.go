package main

import (
	"bytes"
	"context"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/consentd/consentd/bench/soak"
)

func TestParseSoakFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		ok   bool
	}{
		{"defaults", nil, true},
		{"CI", []string{"--duration", "60s", "--out", "x"}, true},
		{"some faults", []string{"--faults", "flushall, sigstop"}, true},
		{"unknown fault", []string{"--faults", "flushall,meteor"}, false},
		{"no duration", []string{"--duration", "0s"}, false},
		{"no rate", []string{"--rate", "0"}, false},
		{"no contacts", []string{"--contacts", "0"}, false},
		{"no hold", []string{"--fault-hold", "0s"}, false},
		{"stray argument", []string{"extra"}, false},
	} {
		_, _, err := parseSoakFlags(tc.args, io.Discard)
		if (err == nil) != tc.ok {
			t.Errorf("%s: parseSoakFlags(%q) error %v, want ok=%v", tc.name, tc.args, err, tc.ok)
		}
	}
	c, out, err := parseSoakFlags([]string{"--faults", "flushall, sigstop", "--duration", "1h", "--redis-init=false"}, io.Discard)
	if err != nil || out != "soak-out" || c.Duration != time.Hour || c.RedisInit || !slices.Equal(c.Faults, []string{"flushall", "sigstop"}) {
		t.Errorf("got %+v, out %q, err %v", c, out, err)
	}
	if c, _, _ := parseSoakFlags(nil, io.Discard); !slices.Equal(c.Faults, soak.AllFaults()) {
		t.Errorf("the default schedule is %v, want every fault %v", c.Faults, soak.AllFaults())
	}
}

func TestSoakHelpSaysHowToRunAnHour(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"soak", "-h"}, &stdout, &stderr); code != 0 {
		t.Fatalf("soak -h exited %d: %s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "--duration 1h") {
		t.Errorf("soak -h does not say how to run an hour:\n%s", stderr.String())
	}
	stderr.Reset()
	if code := run(context.Background(), []string{"soak", "--faults", "meteor"}, &stdout, &stderr); code != 2 {
		t.Errorf("a bad flag exited %d, want 2 (%s)", code, stderr.String())
	}
}

func TestSoakLog(t *testing.T) {
	var b bytes.Buffer
	l := &soakLog{w: &b, left: 60}
	for _, line := range []string{
		`consentd: {"level":"WARN","msg":"rpc","code":"Unavailable"}` + "\n",
		`consentd: {"level":"ERROR","msg":"store lost"}` + "\n", // 47 bytes: kept
		`consentd: {"level":"WARN","msg":"rpc","code":"Unavailable"}` + "\n",
		`consentd: {"level":"ERROR","msg":"store lost"}` + "\n", // past 60 bytes: dropped
	} {
		if n, err := l.Write([]byte(line)); n != len(line) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	l.close()
	want := `consentd: {"level":"ERROR","msg":"store lost"}` + "\n" +
		"(consentbench: 2 lines of refused calls not copied, 1 lines past 16 MiB dropped)\n"
	if got := b.String(); got != want {
		t.Errorf("log:\n%s\nwant:\n%s", got, want)
	}
}
