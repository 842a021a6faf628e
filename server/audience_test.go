package server

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// testLimits: streams of 100-byte windows, 4 at most, 300 bytes in all,
// half of each for one caller (2 streams, 150 bytes).
var testLimits = AudienceLimits{Window: 100, MaxStreams: 4, MaxBytes: 300, CallerShare: 0.5}

// opened opens a stream of caller that holds held bytes, or fails the test.
func opened(t *testing.T, b *audienceBudget, caller string, held int64) *audienceStream {
	t.Helper()
	s, err := b.open(caller)
	if err != nil {
		t.Fatalf("open(%q): %v", caller, err)
	}
	if held > 0 {
		s.hold(held)
	}
	return s
}

func TestAudienceBudgetOpen(t *testing.T) {
	for _, tc := range []struct {
		name   string
		before func(t *testing.T, b *audienceBudget)
		caller string
		want   string // "" admitted, else what the refusal says
	}{
		{name: "room", caller: "ads"},
		{name: "streams at the cap", before: func(t *testing.T, b *audienceBudget) {
			for range 4 {
				opened(t, b, "", 0)
			}
		}, want: "4 audience streams are open, the most allowed (--audience-max-streams=4)"},
		{name: "a closed stream frees its place", before: func(t *testing.T, b *audienceBudget) {
			for range 3 {
				opened(t, b, "", 0)
			}
			opened(t, b, "", 50).close()
		}},
		{name: "bytes at the cap", before: func(t *testing.T, b *audienceBudget) {
			for range 3 {
				opened(t, b, "", 100)
			}
		}, want: "audience streams hold 300 bytes, no room for another stream's window of 100 bytes within --audience-max-bytes=300"},
		{name: "a window still fits", before: func(t *testing.T, b *audienceBudget) {
			opened(t, b, "", 100)
			opened(t, b, "", 100)
		}},
		{name: "bytes given back", before: func(t *testing.T, b *audienceBudget) {
			opened(t, b, "", 100)
			opened(t, b, "", 100)
			opened(t, b, "", 100).release(100)
		}},
		{name: "caller's share of streams", before: func(t *testing.T, b *audienceBudget) {
			opened(t, b, "ads", 0)
			opened(t, b, "ads", 0)
		}, caller: "ads", want: `caller "ads" has 2 audience streams open, its share (--audience-caller-share=0.5) of --audience-max-streams=4`},
		{name: "another caller is not held back", before: func(t *testing.T, b *audienceBudget) {
			opened(t, b, "ads", 0)
			opened(t, b, "ads", 0)
		}, caller: "crm"},
		{name: "unnamed streams are no caller's", before: func(t *testing.T, b *audienceBudget) {
			opened(t, b, "", 0)
			opened(t, b, "", 0)
		}, caller: "ads"},
		{name: "a caller's closed stream frees its share", before: func(t *testing.T, b *audienceBudget) {
			opened(t, b, "ads", 0)
			opened(t, b, "ads", 100).close()
		}, caller: "ads"},
		{name: "caller's share of bytes", before: func(t *testing.T, b *audienceBudget) {
			opened(t, b, "ads", 100)
		}, caller: "ads", want: `caller "ads"'s audience streams hold 100 bytes, no room for another window of 100 bytes within its share (--audience-caller-share=0.5) of --audience-max-bytes=300`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newAudienceBudget(testLimits)
			if tc.before != nil {
				tc.before(t, b)
			}
			s, err := b.open(tc.caller)
			var got string
			if err != nil {
				var le *LimitError
				if !errors.As(err, &le) {
					t.Fatalf("open: %v, want a *LimitError", err)
				}
				got = strings.TrimPrefix(err.Error(), "FilterAudience: ")
				got, _, _ = strings.Cut(got, "; retry when one ends")
			} else {
				s.close()
			}
			if got != tc.want {
				t.Errorf("open(%q) refused with %q, want %q", tc.caller, got, tc.want)
			}
		})
	}
}

// TestAudienceWindow: a stream reads another message only while one as
// large as its largest fits in its window, the server's budget and its
// caller's share; with nothing held it always may.
func TestAudienceWindow(t *testing.T) {
	for _, tc := range []struct {
		name   string
		before func(t *testing.T, b *audienceBudget) // other streams, opened after this one
		caller string
		held   []int64 // the stream's messages read and not answered
		want   bool
	}{
		{name: "nothing held", want: true},
		{name: "one message larger than the window, alone", held: []int64{250}, want: false},
		{name: "nothing held after a large message", held: []int64{250, -250}, want: true},
		{name: "another as large fits", held: []int64{40, 30}, want: false},
		{name: "another as large still fits", held: []int64{30, 20}, want: true},
		{name: "the window is full", held: []int64{50, 50}, want: false},
		{name: "an answer sent makes room", held: []int64{50, 50, -50}, want: true},
		{name: "the server's budget is spent", before: func(t *testing.T, b *audienceBudget) {
			opened(t, b, "", 100)
			opened(t, b, "", 100)
			opened(t, b, "", 90)
		}, held: []int64{10}, want: false},
		{name: "the server's budget is spent, nothing held", before: func(t *testing.T, b *audienceBudget) {
			opened(t, b, "", 100)
			opened(t, b, "", 100)
			opened(t, b, "", 100)
		}, want: true},
		{name: "the caller's share is spent", before: func(t *testing.T, b *audienceBudget) {
			opened(t, b, "ads", 100)
		}, caller: "ads", held: []int64{30}, want: false},
		{name: "another caller's share is not", before: func(t *testing.T, b *audienceBudget) {
			opened(t, b, "ads", 100)
		}, caller: "crm", held: []int64{30}, want: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newAudienceBudget(testLimits)
			s := opened(t, b, tc.caller, 0)
			if tc.before != nil {
				tc.before(t, b)
			}
			for _, n := range tc.held {
				if n > 0 {
					s.hold(n)
				} else {
					s.release(-n)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
			defer cancel()
			if got := s.room(ctx) == nil; got != tc.want {
				t.Errorf("room = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestAudienceRoomWakes: a stream waiting for room reads on as soon as an
// answer is sent, or another stream gives bytes back; it stops waiting
// when its call ends; and a message read after the call ended (its
// receiver was in Recv) is not counted.
func TestAudienceRoomWakes(t *testing.T) {
	b := newAudienceBudget(testLimits)
	other := opened(t, b, "", 100)
	other2 := opened(t, b, "", 100)
	s := opened(t, b, "", 60)
	waitRoom := func() chan error {
		got := make(chan error, 1)
		go func() { got <- s.room(context.Background()) }()
		select {
		case err := <-got:
			t.Fatalf("room returned %v while the window was full", err)
		case <-time.After(20 * time.Millisecond):
		}
		return got
	}
	got := waitRoom()
	s.release(60)
	if err := <-got; err != nil {
		t.Fatal(err)
	}

	s.hold(60)
	s.release(30)  // s holds 30 of its window of 100: another 60 would fit
	other.hold(20) // but not in the server's 300 (other holds one message more than its window)
	got = waitRoom()
	other.close()
	if err := <-got; err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	s.hold(70)
	done := make(chan error, 1)
	go func() { done <- s.room(ctx) }()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("room after the call ended: %v, want context.Canceled", err)
	}

	s.close()
	s.hold(50)
	other2.close()
	if streams, bytes := b.streams, b.bytes; streams != 0 || bytes != 0 {
		t.Errorf("after every stream closed: %d streams holding %d bytes, want none", streams, bytes)
	}
	if len(b.callers) != 0 {
		t.Errorf("callers left: %v", b.callers)
	}
}

func TestMessageCost(t *testing.T) {
	for _, tc := range []struct {
		contacts []string
		want     int64
	}{
		{nil, perMessage},
		{[]string{"a@x"}, perMessage + perContact + 3},
		{[]string{"a@x", "bb@example.com"}, perMessage + 2*perContact + 3 + 14},
	} {
		if got := messageCost(tc.contacts); got != tc.want {
			t.Errorf("messageCost(%q) = %d, want %d", tc.contacts, got, tc.want)
		}
	}
}
