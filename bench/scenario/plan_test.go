package scenario

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/consentd/consentd/bench"
	"github.com/consentd/consentd/consent"
	"github.com/consentd/consentd/internal/caller"
	"github.com/consentd/consentd/internal/policy"
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
		{Scenario: "check-warm-plain@2000/s", Transport: "tcp", Store: "embedded", Result: result(2000, 400*us)},
		{Scenario: "check-warm-entitled@2000/s", Transport: "tcp", Store: "embedded", Result: result(2000, 500*us)},
		{Scenario: "check-warm-entitled@1000/s", Transport: "tcp", Store: "embedded", Result: result(1000, 500*us)}, // no plain row at 1000/s
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
		// Against Check without identity at the same rate.
		"check-warm-entitled@2000/s tcp embedded procs=0": {"p50_vs_plain": 1.25, "p99_vs_plain": 1.25},
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
	got := Plots(rows)
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

// TestEntitlementFiles: the files the entitlement scenario starts consentd
// with are ones consentd accepts, and they let the load's token Check the
// purpose measured and fill the cache, and nothing the scenario does not
// need.
func TestEntitlementFiles(t *testing.T) {
	tokensFile, policyFile, token, err := entitlementFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tokens, err := caller.LoadBearerTokens(tokensFile)
	if err != nil {
		t.Fatal(err)
	}
	caller, ok := tokens.Lookup(token)
	if !ok || caller != benchCaller {
		t.Fatalf("the load's token names %q (found %v), want %q", caller, ok, benchCaller)
	}
	if got, want := tokens.Len(), policyCallers+1; got != want {
		t.Errorf("%d tokens, want %d", got, want)
	}
	var names []string
	for _, p := range consent.DefaultPurposes() {
		names = append(names, p.Name)
	}
	b, err := os.ReadFile(policyFile)
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Parse(b, names)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		rpc, purpose string
		want         bool
	}{
		{"Check", "email_marketing", true},
		{"FilterAudience", "ad_retargeting", true},
		{"Check", "sales_outreach", false},
		{"Grant", "email_marketing", false},
	} {
		if got := pol.AllowRPC(caller, tc.rpc) && pol.AllowPurpose(caller, tc.purpose); got != tc.want {
			t.Errorf("%s may %s on %s: %v, want %v", caller, tc.rpc, tc.purpose, got, tc.want)
		}
	}
}

// TestInterleave: the arms take turns, in order and then reversed, and each
// arm's row holds all its slices at the rate offered, not their sum.
func TestInterleave(t *testing.T) {
	const rounds, rate = 4, 1000.0
	r := &runner{Config: Config{EntitlementRounds: rounds, Duration: 40 * time.Millisecond, Workers: 4}, stderr: io.Discard}
	s := &session{setup: setup{transport: "tcp"}, store: &storeEnv{kind: "embedded"}}
	var mu sync.Mutex
	var ran []string // the arm of every request, in the order they started
	op := func(name string) bench.Op {
		return func(context.Context, int) error {
			mu.Lock()
			defer mu.Unlock()
			ran = append(ran, name)
			return nil
		}
	}
	if err := r.interleave(context.Background(), rate, []arm{{s, "a", "", op("a")}, {s, "b", "a", op("b")}}); err != nil {
		t.Fatal(err)
	}
	// a b | b a | a b | b a, with the turns' requests run together.
	if got, want := slices.Compact(ran), []string{"a", "b", "a", "b", "a"}; !slices.Equal(got, want) {
		t.Errorf("turns %q, want %q", got, want)
	}
	var got []string
	for _, row := range s.rows {
		got = append(got, fmt.Sprintf("%s baseline=%q offered=%g count=%d rounds=%g", row.Scenario, row.Baseline, row.Result.Offered, row.Result.Count, row.Extra["rounds"]))
	}
	want := []string{
		`a baseline="" offered=1000 count=40 rounds=4`,
		`b baseline="a" offered=1000 count=40 rounds=4`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("rows (-want +got):\n%s", diff)
	}
}
