package soak

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// ms is t0 plus n milliseconds: the tests' clock.
func tms(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }

func acked(c, p int, k Kind, start, end int) Write {
	return Write{Contact: c, Purpose: p, Kind: k, Start: tms(start), End: tms(end), Acked: true}
}

func failed(c, p int, k Kind, start, end int) Write {
	return Write{Contact: c, Purpose: p, Kind: k, Start: tms(start), End: tms(end)}
}

// allow is a Check of (c, p) that answered ALLOW, passing the token of
// write tok (-1: none).
func allow(c, p, start, end, tok int) Answer {
	return Answer{Contact: c, Purpose: p, Start: tms(start), End: tms(end), Allowed: true, Token: tok}
}

// read is an audit read of contact c showing ALLOW for the purposes in
// allowed (of 4).
func read(c, start, end int, allowed ...int) Read {
	rd := Read{Contact: c, Start: tms(start), End: tms(end), Allowed: make([]bool, 4)}
	for _, p := range allowed {
		rd.Allowed[p] = true
	}
	return rd
}

// noticed is wp with each sidecar (A, B, ...) seen NOT_SERVING at the given
// millisecond (-1: never).
func noticed(wp Wipe, at ...int) Wipe {
	for _, ms := range at {
		var t time.Time
		if ms >= 0 {
			t = tms(ms)
		}
		wp.Noticed = append(wp.Noticed, t)
	}
	return wp
}

func TestEvaluate(t *testing.T) {
	const lease = 2 * time.Second
	grant0 := acked(1, 0, Grant, 0, 10)
	withdraw0 := acked(1, 0, Withdraw, 20, 30)
	// A FLUSHALL sent at 100 ms, answered at 105, re-initialised at 2 s.
	wipe := Wipe{Sent: tms(100), Done: tms(105), Reinit: tms(2000)}
	tests := []struct {
		name   string
		log    Log
		want   map[Rule]int // rules not named must count 0
		within int          // AllowWithinLease
		before int          // AllowBeforeNotice
	}{
		{name: "ALLOW after an acknowledged grant",
			log: Log{Writes: []Write{grant0}, Answers: []Answer{allow(1, 0, 20, 25, -1)}}},
		{name: "ALLOW with no write at all",
			log:  Log{Answers: []Answer{allow(1, 0, 20, 25, -1)}},
			want: map[Rule]int{AllowBeyondLease: 1}},
		{name: "ALLOW of another purpose than the one granted",
			log:  Log{Writes: []Write{grant0}, Answers: []Answer{allow(1, 1, 20, 25, -1)}},
			want: map[Rule]int{AllowBeyondLease: 1}},
		{name: "ALLOW within the lease of a withdrawal, no token",
			log:    Log{Writes: []Write{grant0, withdraw0}, Answers: []Answer{allow(1, 0, 1000, 1001, -1)}},
			within: 1},
		{name: "ALLOW exactly at the end of the lease",
			log:    Log{Writes: []Write{grant0, withdraw0}, Answers: []Answer{allow(1, 0, 2030, 2031, -1)}},
			within: 1},
		{name: "ALLOW past the lease of a withdrawal",
			log:  Log{Writes: []Write{grant0, withdraw0}, Answers: []Answer{allow(1, 0, 2031, 2032, -1)}},
			want: map[Rule]int{AllowBeyondLease: 1}},
		{name: "ALLOW passing the withdrawal's token, within the lease",
			log:  Log{Writes: []Write{grant0, withdraw0}, Answers: []Answer{allow(1, 0, 40, 41, 1)}},
			want: map[Rule]int{AllowWithToken: 1}},
		{name: "ALLOW passing only the grant's token is judged by the lease",
			log:    Log{Writes: []Write{grant0, withdraw0}, Answers: []Answer{allow(1, 0, 40, 41, 0)}},
			within: 1},
		{name: "ALLOW passing the token of a later write of another purpose",
			log: Log{Writes: []Write{grant0, withdraw0, acked(1, 1, Grant, 40, 50)},
				Answers: []Answer{allow(1, 0, 60, 61, 2)}},
			want: map[Rule]int{AllowWithToken: 1}},
		{name: "a Check that started before the withdrawal's ack may see the grant",
			log: Log{Writes: []Write{grant0, withdraw0}, Answers: []Answer{allow(1, 0, 29, 31, 1)}}},
		{name: "a failed grant after the withdrawal may have landed",
			log: Log{Writes: []Write{grant0, withdraw0, failed(1, 0, Grant, 40, 50)},
				Answers: []Answer{allow(1, 0, 3000, 3001, -1)}}},
		{name: "a grant begun while the Check was in flight may explain it",
			log: Log{Writes: []Write{grant0, withdraw0, acked(1, 0, Grant, 3000, 3010)},
				Answers: []Answer{allow(1, 0, 2990, 3005, -1)}}},
		{name: "a failed grant before the withdrawal is older than it",
			log: Log{Writes: []Write{failed(1, 0, Grant, 0, 10), withdraw0},
				Answers: []Answer{allow(1, 0, 3000, 3001, -1)}},
			want: map[Rule]int{AllowBeyondLease: 1}},
		{name: "ALLOW after an erasure, of any purpose",
			log: Log{Writes: []Write{acked(1, 2, Grant, 0, 10), acked(1, 0, Erase, 20, 30)},
				Answers: []Answer{allow(1, 2, 3000, 3001, -1), allow(1, 2, 40, 41, 1)}},
			want: map[Rule]int{AllowBeyondLease: 1, AllowWithToken: 1}},
		{name: "a stream's ALLOW is judged like a Check's",
			log: Log{Writes: []Write{grant0, withdraw0},
				Answers: []Answer{{Contact: 1, Start: tms(2500), End: tms(2600), Allowed: true, Stream: true, Token: -1}}},
			want: map[Rule]int{AllowBeyondLease: 1}},
		{name: "DENY answers are never violations",
			log: Log{Writes: []Write{grant0}, Answers: []Answer{{Contact: 1, Start: tms(20), End: tms(21), Token: 0}}}},

		{name: "ALLOW after a FLUSHALL, within the lease, before the sidecar noticed",
			log:    Log{Writes: []Write{grant0}, Wipes: []Wipe{wipe}, Answers: []Answer{allow(1, 0, 200, 201, 0)}},
			before: 1},
		{name: "ALLOW after a FLUSHALL, from a sidecar that had noticed",
			log: Log{Writes: []Write{grant0}, Wipes: []Wipe{noticed(wipe, 150, -1)},
				Answers: []Answer{allow(1, 0, 200, 201, -1), {Contact: 1, Sidecar: 1, Start: tms(200), End: tms(201), Allowed: true, Token: -1}}},
			want: map[Rule]int{AllowUnknown: 1}, before: 1},
		{name: "ALLOW after a FLUSHALL, past the lease, before any sidecar noticed",
			log: Log{Writes: []Write{grant0}, Wipes: []Wipe{{Sent: tms(100), Done: tms(105), Reinit: tms(5000)}},
				Answers: []Answer{allow(1, 0, 2105, 2106, -1), allow(1, 0, 2106, 2107, -1)}},
			want: map[Rule]int{AllowUnknown: 1}, before: 1},
		{name: "ALLOW after a FLUSHALL that was never followed by a re-init",
			log: Log{Writes: []Write{grant0}, Wipes: []Wipe{{Sent: tms(100), Done: tms(105)}},
				Answers: []Answer{allow(1, 0, 10000, 10001, -1)}},
			want: map[Rule]int{AllowUnknown: 1}},
		{name: "ALLOW during the unknown span, explained by a grant after the re-init",
			log: Log{Writes: []Write{acked(1, 0, Grant, 2100, 2110)}, Wipes: []Wipe{wipe},
				Answers: []Answer{allow(1, 0, 1990, 2200, -1)}}},
		{name: "ALLOW during the unknown span, from a grant acknowledged into the wiped store",
			log: Log{Writes: []Write{acked(1, 0, Grant, 200, 210)}, Wipes: []Wipe{noticed(wipe, 250, 250)},
				Answers: []Answer{allow(1, 0, 300, 301, 0)}},
			want: map[Rule]int{AllowUnknown: 1, WipedAck: 1}},
		{name: "ALLOW after the re-init, of a grant the FLUSHALL destroyed",
			log:  Log{Writes: []Write{grant0}, Wipes: []Wipe{wipe}, Answers: []Answer{allow(1, 0, 5000, 5001, 0)}},
			want: map[Rule]int{AllowBeyondLease: 1}},
		{name: "ALLOW in a recorded span of unknown state",
			log: Log{Writes: []Write{grant0}, Unknown: []Window{{From: tms(1000), To: tms(3000)}},
				Answers: []Answer{allow(1, 0, 1500, 1501, -1), allow(1, 0, 3500, 3501, -1)}},
			want: map[Rule]int{AllowUnknown: 1}},

		{name: "a write begun and acknowledged between the FLUSHALL and the re-init",
			log:  Log{Writes: []Write{acked(1, 0, Withdraw, 110, 120)}, Wipes: []Wipe{wipe}},
			want: map[Rule]int{WipedAck: 1}},
		{name: "a write in flight during the FLUSHALL is not held against consentd",
			log: Log{Writes: []Write{acked(1, 0, Grant, 101, 120)}, Wipes: []Wipe{wipe}}},
		{name: "a write acknowledged after the re-init is fine",
			log: Log{Writes: []Write{acked(1, 0, Grant, 1990, 2010)}, Wipes: []Wipe{wipe}}},
		{name: "a write refused after the FLUSHALL is fine",
			log: Log{Writes: []Write{failed(1, 0, Grant, 110, 120)}, Wipes: []Wipe{wipe}}},

		{name: "a read shows every acknowledged write",
			log: Log{Writes: []Write{grant0, acked(1, 1, Grant, 40, 50), acked(1, 1, Withdraw, 60, 70)},
				Reads: []Read{read(1, 100, 101, 0)}}},
		{name: "a read lost a grant",
			log:  Log{Writes: []Write{grant0}, Reads: []Read{read(1, 100, 101)}},
			want: map[Rule]int{LostWrite: 1}},
		{name: "a read lost a withdrawal",
			log:  Log{Writes: []Write{grant0, withdraw0}, Reads: []Read{read(1, 100, 101, 0)}},
			want: map[Rule]int{LostWrite: 1}},
		{name: "a read lost an erasure",
			log:  Log{Writes: []Write{grant0, acked(1, 3, Erase, 20, 30)}, Reads: []Read{read(1, 100, 101, 0)}},
			want: map[Rule]int{LostWrite: 1}},
		{name: "a read shows a grant nobody made",
			log:  Log{Reads: []Read{read(1, 100, 101, 3)}},
			want: map[Rule]int{LostWrite: 1}},
		{name: "a read overlapping a write may show either state",
			log: Log{Writes: []Write{grant0, acked(1, 0, Withdraw, 100, 110)},
				Reads: []Read{read(1, 105, 120, 0), read(1, 105, 120)}}},
		{name: "grants the FLUSHALL destroyed are forgiven",
			log: Log{Writes: []Write{grant0}, Wipes: []Wipe{wipe}, Reads: []Read{read(1, 3000, 3001)}}},
		{name: "a grant in flight during the FLUSHALL may or may not have survived",
			log: Log{Writes: []Write{acked(1, 0, Grant, 90, 120)}, Wipes: []Wipe{wipe},
				Reads: []Read{read(1, 3000, 3001), read(1, 3000, 3001, 0)}}},
		{name: "a read after the FLUSHALL still must not show a withdrawn purpose granted",
			log:  Log{Writes: []Write{grant0, withdraw0}, Wipes: []Wipe{wipe}, Reads: []Read{read(1, 3000, 3001, 0)}},
			want: map[Rule]int{LostWrite: 1}},
		{name: "a failed erasure held up by a fault may clear a later grant",
			log: Log{Writes: []Write{failed(1, 0, Erase, 100, 200), acked(1, 0, Grant, 300, 310)},
				Faults: []Window{{From: tms(50), To: tms(5000)}}, Reads: []Read{read(1, 6000, 6001)}}},
		{name: "a failed erasure outside any fault does not excuse a lost grant",
			log:  Log{Writes: []Write{failed(1, 0, Erase, 100, 200), acked(1, 0, Grant, 300, 310)}, Reads: []Read{read(1, 6000, 6001)}},
			want: map[Rule]int{LostWrite: 1}},
		{name: "a failed erasure never makes an ALLOW explained",
			log: Log{Writes: []Write{grant0, withdraw0, failed(1, 0, Erase, 40, 50)},
				Faults: []Window{{From: tms(0), To: tms(5000)}}, Reads: []Read{read(1, 6000, 6001, 0)}},
			want: map[Rule]int{LostWrite: 1}},
		{name: "other contacts' writes explain nothing",
			log:  Log{Writes: []Write{acked(2, 0, Grant, 0, 10)}, Reads: []Read{read(1, 100, 101, 0)}},
			want: map[Rule]int{LostWrite: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Evaluate(tt.log, lease, t0)
			want := map[Rule]int{}
			for _, r := range Rules() {
				want[r] = tt.want[r]
			}
			if diff := cmp.Diff(want, got.Counts); diff != "" {
				t.Errorf("counts (-want +got):\n%s\nsamples: %+v", diff, got.Samples)
			}
			if got.AllowWithinLease != tt.within || got.AllowBeforeNotice != tt.before {
				t.Errorf("AllowWithinLease = %d, AllowBeforeNotice = %d; want %d and %d", got.AllowWithinLease, got.AllowBeforeNotice, tt.within, tt.before)
			}
			if got.Failed() != (len(tt.want) > 0) {
				t.Errorf("Failed() = %v with counts %v", got.Failed(), got.Counts)
			}
		})
	}
}

func TestEvaluateSamples(t *testing.T) {
	l := Log{Writes: []Write{acked(7, 2, Grant, 0, 10), acked(7, 2, Withdraw, 20, 30)}}
	for i := range 3 * samplesPerRule {
		l.Answers = append(l.Answers, allow(7, 2, 40+i, 41+i, 1))
	}
	got := Evaluate(l, time.Second, t0)
	if got.Counts[AllowWithToken] != 3*samplesPerRule || len(got.Samples) != samplesPerRule {
		t.Fatalf("%d violations, %d samples; want %d and %d", got.Counts[AllowWithToken], len(got.Samples), 3*samplesPerRule, samplesPerRule)
	}
	want := Violation{Rule: AllowWithToken, Contact: 7, Purpose: 2, At: 40 * time.Millisecond, Detail: "withdraw acknowledged at 30ms"}
	if diff := cmp.Diff(want, got.Samples[0]); diff != "" {
		t.Errorf("first sample (-want +got):\n%s", diff)
	}
}
