package soak

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestTransitions(t *testing.T) {
	// A fault injected at 1 s, ended at 4 s, recovered at 5 s.
	injected, ended, recovered := tms(1000), tms(4000), tms(5000)
	f := func(v float64) *float64 { return &v }
	ev := func(at int, h Health) healthEvent { return healthEvent{At: tms(at), State: h} }
	tests := []struct {
		name     string
		h        []healthEvent
		down, up *float64
	}{
		{name: "never left SERVING", h: []healthEvent{ev(0, Serving)}},
		{name: "NOT_SERVING during the fault, SERVING after its end",
			h:    []healthEvent{ev(0, Serving), ev(1300, NotServing), ev(4200, Serving)},
			down: f(300), up: f(200)},
		{name: "down (killed), then back",
			h:    []healthEvent{ev(0, Serving), ev(1050, Down), ev(4100, NotServing), ev(4150, Serving)},
			down: f(50), up: f(150)},
		{name: "back before the fault ended counts as 0",
			h:    []healthEvent{ev(0, Serving), ev(1500, NotServing), ev(2000, Serving)},
			down: f(500), up: f(0)},
		{name: "left SERVING only after the end: the operator's restart, not a detection",
			h:  []healthEvent{ev(0, Serving), ev(4100, Down), ev(4600, Serving)},
			up: f(600)},
		{name: "never SERVING again",
			h:    []healthEvent{ev(0, Serving), ev(2000, NotServing)},
			down: f(1000)},
		{name: "a flap after the recovery is not this fault's",
			h:    []healthEvent{ev(0, Serving), ev(5100, NotServing), ev(5200, Serving)},
			down: nil, up: nil},
		{name: "the first detection counts, the last return",
			h:    []healthEvent{ev(0, Serving), ev(1100, NotServing), ev(1200, Serving), ev(3000, NotServing), ev(4400, Serving)},
			down: f(100), up: f(400)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			down, up := transitions(tt.h, injected, ended, recovered)
			if diff := cmp.Diff(tt.down, down); diff != "" {
				t.Errorf("to NOT_SERVING (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.up, up); diff != "" {
				t.Errorf("to SERVING (-want +got):\n%s", diff)
			}
		})
	}
}

func TestReportFails(t *testing.T) {
	for _, tt := range []struct {
		name string
		r    Report
		want bool
	}{
		{"clean", Report{Findings: Findings{Counts: map[Rule]int{LostWrite: 0}}}, false},
		{"a violation", Report{Findings: Findings{Counts: map[Rule]int{AllowUnknown: 1}}}, true},
		{"a recovery failure", Report{RecoveryFailures: 1}, true},
		{"unread contacts", Report{Unverified: 3}, true},
		{"a fault not reported", Report{Undetected: 1}, true},
		{"a stalled Check", Report{Stalled: 1}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.r.Failed(); got != tt.want {
				t.Errorf("Failed() = %v, want %v", got, tt.want)
			}
			var b strings.Builder
			if err := tt.r.WriteMarkdown(&b); err != nil {
				t.Fatal(err)
			}
			if got := strings.HasPrefix(b.String(), "**FAIL"); got != tt.want {
				t.Errorf("markdown verdict:\n%s", b.String())
			}
		})
	}
}

func TestBuildReportJudgesFaults(t *testing.T) {
	ev := func(at int, h Health) healthEvent { return healthEvent{At: tms(at), State: h} }
	// A goes NOT_SERVING in both faults, B in neither.
	health := map[string][]healthEvent{
		"A": {ev(0, Serving), ev(1500, NotServing), ev(4100, Serving), ev(10500, NotServing), ev(11100, Serving)},
		"B": {ev(0, Serving)},
	}
	cfg := DefaultConfig()
	faults := []*fault{
		// Held 3 s: both must have left SERVING.
		{Kind: FaultSigstop, Expect: []int{0, 1}, judged: true, Injected: tms(1000), Ended: tms(4000), Recovered: tms(4200)},
		// Held 1 s: too short to judge.
		{Kind: FaultSigstop, Expect: []int{0, 1}, Injected: tms(10000), Ended: tms(11000), Recovered: tms(11200)},
		// B's own fault, which A may sit out.
		{Kind: FaultFeed, Expect: []int{1}, judged: true, Injected: tms(20000), Ended: tms(23000), Recovered: tms(23100)},
	}
	calls := []Call{{Took: cfg.Stall}, {Took: cfg.Stall + time.Millisecond}, {Took: time.Millisecond}}
	r := buildReport(cfg, t0, tms(30000), Log{}, calls, 0, faults, health, nil, audit{}, nil)
	if r.Undetected != 2 || r.Stalled != 1 {
		t.Errorf("Undetected = %d, Stalled = %d; want 2 (B in the first and third faults) and 1", r.Undetected, r.Stalled)
	}
	var notes [][]string
	for _, f := range r.Faults {
		notes = append(notes, f.Notes)
	}
	want := [][]string{{"**B stayed SERVING**"}, nil, {"**B stayed SERVING**"}}
	if diff := cmp.Diff(want, notes); diff != "" {
		t.Errorf("notes (-want +got):\n%s", diff)
	}
	if !r.Failed() {
		t.Error("Failed() = false")
	}
}
