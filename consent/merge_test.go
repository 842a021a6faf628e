package consent

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

func TestMergeSpellings(t *testing.T) {
	day := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	at := day.Add(100 * time.Hour) // the migration
	h := func(n int) time.Time { return day.Add(time.Duration(n) * time.Hour) }
	yes := func(p string, hour int) Event {
		return Event{Kind: EventGrant, Purposes: []string{p}, Proof: Proof{Method: MethodCheckbox, Source: SourceFirstParty, CapturedAt: h(hour), RecordedAt: h(hour)}}
	}
	no := func(p string, hour int) Event {
		e := Event{Kind: EventWithdraw, Proof: Proof{CapturedAt: h(hour), RecordedAt: h(hour)}}
		if p != "" {
			e.Purposes = []string{p}
		}
		return e
	}
	erase := func(hour int) Event { return Event{Kind: EventErase, Proof: Proof{CapturedAt: h(hour)}} }
	rec := func(es ...Event) Record {
		var r Record
		for _, e := range es {
			var err error
			if r, err = Apply(r, e); err != nil {
				t.Fatal(err)
			}
		}
		return r
	}
	// show writes an event as "kind purposes @hour": hour relative to day,
	// "at" for the migration's time.
	show := func(e Event) string {
		when := fmt.Sprintf("+%dh", int(e.Proof.CapturedAt.Sub(day)/time.Hour))
		if e.Proof.CapturedAt.Equal(at) {
			when = "at"
		}
		return fmt.Sprintf("%d %v @%s", e.Kind, e.Purposes, when)
	}
	const m, s = "email_marketing", "sales_outreach"
	tests := []struct {
		name      string
		spellings []Record // [0] is the canonical spelling
		want      []string // the events, shown
		wantLost  []string // "spelling purpose"
		wantAllow map[string]bool
	}{
		{
			name:      "withdrawn under the canonical spelling, an older yes under another: the no wins",
			spellings: []Record{rec(no(m, 5)), rec(yes(m, 1))},
			want:      []string{"2 [email_marketing] @at"},
			wantLost:  []string{"1 email_marketing"},
			wantAllow: map[string]bool{m: false},
		},
		{
			name:      "withdrawn under another spelling: copied with its time, then recorded at migration time",
			spellings: []Record{rec(yes(m, 1)), rec(no(m, 5))},
			want:      []string{"2 [email_marketing] @+5h", "2 [email_marketing] @at"},
			wantLost:  []string{"0 email_marketing"},
			wantAllow: map[string]bool{m: false},
		},
		{
			name:      "a yes under another spelling dated after the withdrawal still loses",
			spellings: []Record{rec(no(m, 2)), rec(yes(m, 9))},
			want:      []string{"2 [email_marketing] @at"},
			wantLost:  []string{"1 email_marketing"},
			wantAllow: map[string]bool{m: false},
		},
		{
			name:      "an erased spelling erases the canonical one, whose later yes is lost",
			spellings: []Record{rec(yes(m, 7)), rec(erase(4))},
			want:      []string{"3 [] @at"},
			wantLost:  []string{"0 email_marketing"},
			wantAllow: map[string]bool{m: false},
		},
		{
			name:      "an erased canonical spelling stays erased: the other's yes is lost",
			spellings: []Record{rec(erase(4)), rec(yes(m, 1), yes(s, 2))},
			want:      []string{"3 [] @at"},
			wantLost:  []string{"1 email_marketing", "1 sales_outreach"},
			wantAllow: map[string]bool{m: false, s: false},
		},
		{
			name:      "yeses for other purposes are copied with their proof",
			spellings: []Record{rec(yes(m, 1)), rec(yes(s, 2))},
			want:      []string{"1 [sales_outreach] @+2h"},
			wantAllow: map[string]bool{m: true, s: true},
		},
		{
			name:      "a withdrawal of every purpose under another spelling beats a yes dated before it",
			spellings: []Record{rec(yes(m, 1)), rec(no("", 3))},
			want:      []string{"2 [] @+3h", "2 [email_marketing] @at"},
			wantLost:  []string{"0 email_marketing"},
			wantAllow: map[string]bool{m: false},
		},
		{
			name:      "a yes given again after a withdrawal under the same spelling stands",
			spellings: []Record{rec(no(m, 1), yes(m, 2)), rec(yes(m, 3))},
			want:      []string{"1 [email_marketing] @+3h"},
			wantAllow: map[string]bool{m: true},
		},
		{
			name:      "an old withdrawal superseded everywhere is copied, and the yeses stand",
			spellings: []Record{rec(yes(m, 5)), rec(no(m, 1), yes(m, 2))},
			want:      []string{"2 [email_marketing] @+1h", "1 [email_marketing] @+2h"},
			wantAllow: map[string]bool{m: true},
		},
		{
			name:      "three spellings: one no among two yeses wins",
			spellings: []Record{rec(yes(m, 1)), rec(yes(m, 8)), rec(no(m, 4))},
			want:      []string{"2 [email_marketing] @+4h", "2 [email_marketing] @at"},
			wantLost:  []string{"0 email_marketing", "1 email_marketing"},
			wantAllow: map[string]bool{m: false},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := MergeSpellings(tt.spellings, at, Proof{Actor: "migrate"})
			var gotEvents, gotLost []string
			for _, e := range got.Events {
				gotEvents = append(gotEvents, show(e))
				if e.Proof.Actor != "migrate" && e.Kind != EventGrant {
					t.Errorf("event %s has actor %q, want the migration's", show(e), e.Proof.Actor)
				}
			}
			for _, l := range got.Lost {
				gotLost = append(gotLost, fmt.Sprintf("%d %s", l.Spelling, l.Purpose))
			}
			if !slices.Equal(gotEvents, tt.want) {
				t.Errorf("events:\n got %q\nwant %q", gotEvents, tt.want)
			}
			if !slices.Equal(gotLost, tt.wantLost) {
				t.Errorf("lost: got %q, want %q", gotLost, tt.wantLost)
			}
			r := tt.spellings[0]
			for _, e := range got.Events {
				var err error
				if r, err = Apply(r, e); err != nil {
					t.Fatalf("apply %s: %v", show(e), err)
				}
			}
			for p, want := range tt.wantAllow {
				if got := granted(&r, p) && r.ErasedAt.IsZero(); got != want {
					t.Errorf("%s after the merge: granted %v, want %v", p, got, want)
				}
			}
		})
	}
}
