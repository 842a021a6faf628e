package daemon

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/consentd/consentd/consent"
	"github.com/consentd/consentd/internal/chain"
	"github.com/consentd/consentd/store"
)

// TestDeadlines: a store call that misses its own deadline while its caller
// still waits is an unavailable store, named by its flag; one whose caller
// gave up first keeps the caller's error; one in time is untouched. On the
// embedded store, which checks its context before it reads or writes; a
// negative timeout has passed before the call starts.
func TestDeadlines(t *testing.T) {
	ch, err := chain.NewKey(bytes.Repeat([]byte("k"), 32))
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.OpenEmbedded(t.TempDir(), ch)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	write := consent.Write{Key: consent.Key{1}, Event: consent.Event{Kind: consent.EventWithdraw, Proof: consent.Proof{CapturedAt: time.Now()}}}
	expired, cancel := context.WithTimeout(context.Background(), -1)
	defer cancel()
	canceled, cancel := context.WithCancel(context.Background())
	cancel()

	for _, tc := range []struct {
		name        string
		read, write time.Duration
		ctx         context.Context
		call        func(context.Context, deadlines) error
		wantIs      error  // nil: no error
		wantNot     error  // an error it must not match
		says        string // in its message
	}{
		{name: "read in time", read: time.Minute, write: time.Minute, ctx: context.Background(),
			call: func(ctx context.Context, d deadlines) error { _, err := d.Get(ctx, consent.Key{2}); return err }},
		{name: "read misses its deadline", read: -1, write: time.Minute, ctx: context.Background(),
			call:   func(ctx context.Context, d deadlines) error { _, err := d.Get(ctx, consent.Key{2}); return err },
			wantIs: consent.ErrUnavailable, wantNot: context.DeadlineExceeded, says: "no answer within the store timeout (-store-read-timeout -1ns)"},
		{name: "many reads miss their deadline", read: -1, write: time.Minute, ctx: context.Background(),
			call: func(ctx context.Context, d deadlines) error {
				return d.GetMany(ctx, []consent.Key{{2}}, make([]consent.Record, 1))
			},
			wantIs: consent.ErrUnavailable, wantNot: context.DeadlineExceeded, says: "-store-read-timeout"},
		{name: "the caller's deadline passed first", read: time.Minute, write: time.Minute, ctx: expired,
			call:   func(ctx context.Context, d deadlines) error { _, err := d.Get(ctx, consent.Key{2}); return err },
			wantIs: context.DeadlineExceeded, wantNot: consent.ErrUnavailable},
		{name: "the caller cancelled", read: -1, write: time.Minute, ctx: canceled,
			call:   func(ctx context.Context, d deadlines) error { _, err := d.Get(ctx, consent.Key{2}); return err },
			wantIs: context.Canceled, wantNot: consent.ErrUnavailable},
		{name: "write in time", read: -1, write: time.Minute, ctx: context.Background(),
			call: func(ctx context.Context, d deadlines) error { _, err := d.Apply(ctx, write); return err }},
		{name: "write misses its deadline", read: time.Minute, write: -1, ctx: context.Background(),
			call:   func(ctx context.Context, d deadlines) error { _, err := d.Apply(ctx, write); return err },
			wantIs: consent.ErrUnavailable, wantNot: context.DeadlineExceeded, says: "-store-write-timeout -1ns); the write may have been applied: retrying with the same request_id"},
		{name: "batch misses its deadline", read: time.Minute, write: -1, ctx: context.Background(),
			call: func(ctx context.Context, d deadlines) error {
				_, _, err := d.ApplyBatch(ctx, []consent.Write{write})
				return err
			},
			wantIs: consent.ErrUnavailable, says: "-store-write-timeout"},
		{name: "history page misses its deadline", read: time.Minute, write: -1, ctx: context.Background(),
			call: func(ctx context.Context, d deadlines) error {
				_, _, err := d.Events(ctx, consent.Key{1}, consent.ConsistencyToken{}, 10)
				return err
			},
			wantIs: consent.ErrUnavailable, says: "-store-write-timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call(tc.ctx, deadlines{store: st, read: tc.read, write: tc.write})
			switch {
			case tc.wantIs == nil && err != nil:
				t.Fatalf("err = %v, want none", err)
			case tc.wantIs != nil && !errors.Is(err, tc.wantIs):
				t.Fatalf("err = %v, want one matching %v", err, tc.wantIs)
			case tc.wantNot != nil && errors.Is(err, tc.wantNot):
				t.Errorf("err = %v matches %v", err, tc.wantNot)
			}
			if err != nil && !strings.Contains(err.Error(), tc.says) {
				t.Errorf("err = %q, want it to say %q", err, tc.says)
			}
		})
	}
}
