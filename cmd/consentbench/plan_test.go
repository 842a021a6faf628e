package main

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/consentd/consentd/bench"
)

// result is a Result at rate whose every request took d.
func result(rate float64, d time.Duration) *bench.Result {
	r := &bench.Result{Offered: rate, Achieved: rate}
	for range 50 {
		r.Record(d, nil)
	}
	return r
}

func TestSetBudgets(t *testing.T) {
	us := time.Microsecond
	rows := []bench.Row{
		{Scenario: "check-cold@5000/s", Transport: "unix", Store: "redis", Result: result(5000, 700*us)},
		{Scenario: "floor-cold@5000/s", Transport: "unix", Store: "redis", Result: result(5000, 300*us)},
		{Scenario: "floor-cold@5000/s", Transport: "tcp", Store: "redis", Result: result(5000, 400*us)},
		{Scenario: "direct-redis@5000/s", Transport: "tcp", Store: "redis", Result: result(5000, 200*us)},
		{Scenario: "check-cold@2000/s", Transport: "unix", Store: "redis", Result: result(2000, 700*us)}, // no floor at 2000/s
		{Scenario: "check-cold@5000/s", Transport: "unix", Store: "embedded", Result: result(5000, 700*us)},
		{Scenario: "check-warm-max", Transport: "tcp", Store: "embedded", Procs: 1, Extra: map[string]float64{"max_rps": 6000}},
		{Scenario: "floor-warm-max", Transport: "tcp", Store: "embedded", Procs: 1, Extra: map[string]float64{"max_rps": 8000}},
		{Scenario: "floor-warm-max", Transport: "tcp", Store: "embedded", Extra: map[string]float64{"max_rps": 12000}},
	}
	setBudgets(rows)
	got := map[string]map[string]float64{}
	for _, r := range rows {
		if len(r.Extra) > 0 {
			got[fmt.Sprint(r.Scenario, " ", r.Transport, " ", r.Store, " procs=", r.Procs)] = r.Extra
		}
	}
	want := map[string]map[string]float64{
		// The unix floor at the same rate, the one direct read, plus 100 µs.
		"check-cold@5000/s unix redis procs=0": {"budget_p99_us": 600},
		// Against the floor with the same cores, not the other one.
		"check-warm-max tcp embedded procs=1": {"max_rps": 6000, "max_rps_vs_floor": 0.75},
		"floor-warm-max tcp embedded procs=1": {"max_rps": 8000},
		"floor-warm-max tcp embedded procs=0": {"max_rps": 12000},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("extras (-want +got):\n%s", diff)
	}
}

func TestPlots(t *testing.T) {
	ms := time.Millisecond
	rows := []bench.Row{
		{Scenario: "check-warm@1000/s", Transport: "tcp", Store: "embedded", Result: result(1000, ms/4)},
		{Scenario: "floor-warm@1000/s", Transport: "tcp", Store: "embedded", Result: result(1000, ms/5)},
		{Scenario: "check-warm@5000/s", Transport: "tcp", Store: "embedded", Result: result(5000, ms/3)},
		{Scenario: "floor-warm@5000/s", Transport: "tcp", Store: "embedded", Result: result(5000, ms/4)},
		{Scenario: "check-warm-probe@8000/s", Transport: "tcp", Store: "embedded", Probe: true, Result: result(8000, 2*ms)},
		{Scenario: "check-warm-max", Transport: "tcp", Store: "embedded", Result: result(5000, ms/3)},
		{Scenario: "check-cold@5000/s", Transport: "unix", Store: "redis", Result: result(5000, ms/2)},
		{Scenario: "direct-redis@5000/s", Transport: "tcp", Store: "redis", Result: result(5000, ms/5)},
		{Scenario: "filter-audience-warm", Transport: "tcp", Store: "embedded", Result: result(0, time.Second)},
	}
	got := plots(rows)
	want := []string{"rate-embedded-tcp.png", "spectrum-embedded-tcp.png", "spectrum-redis-unix.png"}
	if diff := cmp.Diff(want, slices.Sorted(maps.Keys(got))); diff != "" {
		t.Fatalf("plots (-want +got):\n%s", diff)
	}
	for name, draw := range got {
		var b bytes.Buffer
		if err := draw(&b); err != nil || !bytes.HasPrefix(b.Bytes(), []byte("\x89PNG")) {
			t.Errorf("%s: %d bytes, err %v; want a PNG", name, b.Len(), err)
		}
	}
}

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
	} {
		_, err := parseFlags(tc.args, io.Discard)
		if (err == nil) != tc.ok {
			t.Errorf("%s: parseFlags(%q) error %v, want ok=%v", tc.name, tc.args, err, tc.ok)
		}
	}
	c, err := parseFlags([]string{"--smoke"}, io.Discard)
	if err != nil || c.pop.Contacts != 2000 || c.search.Ceiling != 2000 || c.pause != 0 {
		t.Errorf("--smoke gave %d contacts, ceiling %v, pause %v (err %v); want a tiny, quick run", c.pop.Contacts, c.search.Ceiling, c.pause, err)
	}
}
