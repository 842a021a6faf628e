package consent

import (
	"errors"
	"slices"
	"testing"
	"time"
)

func TestApplyLinks(t *testing.T) {
	at := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	a, b := Link{Key: Key{1}, Kind: IDEmail}, Link{Key: Key{2}, Kind: IDPhone}
	ev := func(k EventKind, other Link) Event {
		return Event{Kind: k, Other: other, Proof: Proof{CapturedAt: at, RecordedAt: at}}
	}
	granted := Record{Purposes: map[string]PurposeRecord{"email_marketing": {Grant: &Proof{Method: MethodCheckbox, Source: SourceFirstParty, CapturedAt: at.Add(-time.Hour)}}}}
	tests := []struct {
		name      string
		start     Record
		events    []Event
		wantLinks []Link
		wantAll   time.Time // WithdrawnAllAt
		wantErr   error
	}{
		{"link is kept sorted", Record{}, []Event{ev(EventLink, b), ev(EventLink, a)}, []Link{a, b}, time.Time{}, nil},
		{"link twice is one link", Record{}, []Event{ev(EventLink, a), ev(EventLink, a)}, []Link{a}, time.Time{}, nil},
		{"unlink one", Record{}, []Event{ev(EventLink, a), ev(EventLink, b), ev(EventUnlink, a)}, []Link{b}, time.Time{}, nil},
		{"unlink every link", Record{}, []Event{ev(EventLink, a), ev(EventLink, b), ev(EventUnlink, Link{})}, nil, time.Time{}, nil},
		{"rectify from links and keeps consents", granted, []Event{ev(EventRectifyFrom, a)}, []Link{a}, time.Time{}, nil},
		{"rectify to links and withdraws every purpose", granted, []Event{ev(EventRectifyTo, b)}, []Link{b}, at, nil},
		{"rectify to dated back withdraws from when it was recorded", granted,
			[]Event{{Kind: EventRectifyTo, Other: b, Proof: Proof{CapturedAt: at.Add(-48 * time.Hour), RecordedAt: at}}}, []Link{b}, at, nil},
		{"erase drops links", Record{}, []Event{ev(EventLink, a), ev(EventErase, Link{})}, nil, time.Time{}, nil},
		{"link without a key is invalid", Record{}, []Event{ev(EventLink, Link{Kind: IDEmail})}, nil, time.Time{}, ErrInvalid},
		{"link without a kind is invalid", Record{}, []Event{ev(EventLink, Link{Key: Key{3}})}, nil, time.Time{}, ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := tt.start, error(nil)
			for _, e := range tt.events {
				if r, err = Apply(r, e); err != nil {
					break
				}
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if !slices.Equal(r.Links, tt.wantLinks) {
				t.Errorf("links = %v, want %v", r.Links, tt.wantLinks)
			}
			if !r.WithdrawnAllAt.Equal(tt.wantAll) {
				t.Errorf("WithdrawnAllAt = %v, want %v", r.WithdrawnAllAt, tt.wantAll)
			}
		})
	}
}

func TestRectifiedIdentifierIsDenied(t *testing.T) {
	at := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	p := &Purpose{Name: "email_marketing"}
	r := Record{Purposes: map[string]PurposeRecord{"email_marketing": {Grant: &Proof{Method: MethodCheckbox, Source: SourceFirstParty, CapturedAt: at.Add(-time.Hour), RecordedAt: at.Add(-time.Hour)}}}}
	if got := Decide(&r, p, at); !got.Allowed {
		t.Fatalf("before rectification: %+v, want ALLOW", got)
	}
	r, err := Apply(r, Event{Kind: EventRectifyTo, Other: Link{Key: Key{9}, Kind: IDEmail}, Proof: Proof{CapturedAt: at, RecordedAt: at}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := Decide(&r, p, at.Add(time.Minute)), deny(ReasonWithdrawn); got != want {
		t.Errorf("after: %+v, want %+v", got, want)
	}
}

func TestLinksAreBounded(t *testing.T) {
	var r Record
	var err error
	for i := 0; i <= MaxLinks; i++ {
		r, err = Apply(r, Event{Kind: EventLink, Other: Link{Key: Key{byte(i), 1}, Kind: IDExternal}})
		if err != nil {
			break
		}
	}
	if !errors.Is(err, ErrInvalid) || len(r.Links) != MaxLinks {
		t.Errorf("after %d links: err %v, %d kept; want ErrInvalid and %d", MaxLinks+1, err, len(r.Links), MaxLinks)
	}
}

func TestApplyMovedTo(t *testing.T) {
	at := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	a, b := Link{Key: Key{1}, Kind: IDEmail}, Link{Key: Key{2}, Kind: IDPhone}
	ev := func(k EventKind, other Link) Event {
		return Event{Kind: k, Other: other, Proof: Proof{CapturedAt: at, RecordedAt: at}}
	}
	tests := []struct {
		name   string
		events []Event
		want   Key
	}{
		{"not moved", []Event{ev(EventLink, a)}, Key{}},
		{"rectify to sets it", []Event{ev(EventRectifyTo, a)}, a.Key},
		{"rectify from does not", []Event{ev(EventRectifyFrom, a)}, Key{}},
		{"a later rectify to moves it on", []Event{ev(EventRectifyTo, a), ev(EventRectifyTo, b)}, b.Key},
		{"a link after keeps it", []Event{ev(EventRectifyTo, a), ev(EventLink, b)}, a.Key},
		{"withdraw keeps it", []Event{ev(EventRectifyTo, a), {Kind: EventWithdraw, Purposes: []string{"email_marketing"}, Proof: Proof{CapturedAt: at}}}, a.Key},
		{"unlink of another link keeps it", []Event{ev(EventLink, b), ev(EventRectifyTo, a), ev(EventUnlink, b)}, a.Key},
		{"unlink of that link clears it", []Event{ev(EventRectifyTo, a), ev(EventUnlink, a)}, Key{}},
		{"unlink of every link clears it", []Event{ev(EventRectifyTo, a), ev(EventUnlink, Link{})}, Key{}},
		{"erase clears it", []Event{ev(EventRectifyTo, a), ev(EventErase, Link{})}, Key{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r Record
			for _, e := range tt.events {
				var err error
				if r, err = Apply(r, e); err != nil {
					t.Fatal(err)
				}
			}
			if got := r.MovedTo; got != tt.want {
				t.Errorf("MovedTo = %v, want %v", got, tt.want)
			}
		})
	}
}
