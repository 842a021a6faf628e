package logthrottle

import (
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestAllow(t *testing.T) {
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	type line struct {
		key            string
		at             time.Duration // after t0
		wantOK         bool
		wantSuppressed int
	}
	for _, tc := range []struct {
		name  string
		lines []line
	}{
		{"first line of a key is written", []line{{"a", 0, true, 0}}},
		{"a flood is one line an interval, the next reporting the rest", []line{
			{"a", 0, true, 0}, {"a", time.Second, false, 0}, {"a", 2 * time.Second, false, 0},
			{"a", 10 * time.Second, true, 2}, {"a", 11 * time.Second, false, 0}, {"a", 25 * time.Second, true, 1},
		}},
		{"keys are counted apart", []line{
			{"a", 0, true, 0}, {"b", time.Second, true, 0}, {"a", 2 * time.Second, false, 0},
			{"b", 3 * time.Second, false, 0}, {"b", 11 * time.Second, true, 1}, {"a", 12 * time.Second, true, 1},
		}},
		{"a quiet key starts again with nothing to report", []line{
			{"a", 0, true, 0}, {"a", time.Hour, true, 0},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			th := New(10 * time.Second)
			for i, l := range tc.lines {
				got, ok := th.Allow(l.key, t0.Add(l.at))
				if ok != l.wantOK || got != l.wantSuppressed {
					t.Errorf("line %d (%s at %v): got (%d, %v), want (%d, %v)", i, l.key, l.at, got, ok, l.wantSuppressed, l.wantOK)
				}
			}
		})
	}
}

// TestAllowBoundsKeys: however many keys come, a Throttle remembers at most
// maxKeys (and the overflow); the lines of keys beyond share one allowance,
// and keys with nothing to report make room once their interval is over.
func TestAllowBoundsKeys(t *testing.T) {
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	th := New(10 * time.Second)
	written := 0
	for i := range 3 * maxKeys {
		if _, ok := th.Allow(fmt.Sprint("caller-", i), t0); ok {
			written++
		}
	}
	if got, want := len(th.keys), maxKeys+1; got != want {
		t.Errorf("%d keys remembered, want %d", got, want)
	}
	if got, want := written, maxKeys+1; got != want {
		t.Errorf("%d lines written, want %d (one per key that fitted, one for the rest)", got, want)
	}
	// An interval later the old keys, with nothing to report, make room.
	if _, ok := th.Allow("late", t0.Add(10*time.Second)); !ok {
		t.Error("a new key after the interval was not written")
	}
	if _, ok := th.keys["late"]; !ok {
		t.Error("a new key after the interval has no entry of its own")
	}
	// The overflow reports the lines it suppressed.
	if n, ok := th.Allow(overflow, t0.Add(10*time.Second)); !ok || n != 2*maxKeys-1 {
		t.Errorf("overflow after the interval: (%d, %v), want (%d, true)", n, ok, 2*maxKeys-1)
	}
}
