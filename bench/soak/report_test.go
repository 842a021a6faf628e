package soak

import (
	"strings"
	"testing"

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
