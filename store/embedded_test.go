package store_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	bolt "go.etcd.io/bbolt"

	"github.com/consentd/consentd/consent"
	"github.com/consentd/consentd/store"
	"github.com/consentd/consentd/store/storetest"
)

func openEmbedded(t *testing.T, dir string) *store.Embedded {
	t.Helper()
	s, err := store.OpenEmbedded(dir, storetest.ChainKey())
	if err != nil {
		t.Fatalf("OpenEmbedded(%s): %v", dir, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestEmbeddedConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Store {
		return tamperableEmbedded{openEmbedded(t, t.TempDir())}
	})
}

// tamperableEmbedded is the embedded store with storetest's tampering.
type tamperableEmbedded struct{ *store.Embedded }

func (s tamperableEmbedded) EditEntry(t *testing.T, key consent.Key, tok consent.ConsistencyToken, edit func([]byte) []byte) {
	t.Helper()
	if err := store.EditEmbeddedEntry(s.Embedded, key, tok.Seq, edit); err != nil {
		t.Fatal(err)
	}
}

func (s tamperableEmbedded) EditRecord(t *testing.T, key consent.Key, edit func(consent.Record) consent.Record) {
	t.Helper()
	if err := store.EditEmbeddedRecord(s.Embedded, key, edit); err != nil {
		t.Fatal(err)
	}
}

var (
	when = time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	k1   = consent.Key{31: 1}
	k2   = consent.Key{31: 2}
)

func writes() []consent.Write {
	proof := consent.Proof{Method: consent.MethodButton, Source: consent.SourceFirstParty, CapturedAt: when, Actor: "web", RecordedAt: when}
	return []consent.Write{
		{Key: k1, Fingerprint: [32]byte{1}, Event: consent.Event{Kind: consent.EventGrant, Purposes: []string{"email", "sms"}, Proof: proof, RequestID: "r1"}},
		{Key: k2, Fingerprint: [32]byte{2}, Event: consent.Event{Kind: consent.EventGrant, Purposes: []string{"ads"}, Proof: proof, RequestID: "r2"}},
		{Key: k1, Fingerprint: [32]byte{3}, Event: consent.Event{Kind: consent.EventWithdraw, Purposes: []string{"sms"}, Proof: consent.Proof{CapturedAt: when.Add(time.Hour)}, RequestID: "r3"}},
		{Key: k2, Fingerprint: [32]byte{4}, Event: consent.Event{Kind: consent.EventErase, Proof: consent.Proof{CapturedAt: when.Add(time.Hour)}, RequestID: "r4"}},
	}
}

type state struct {
	Records map[consent.Key]consent.Record
	Events  map[consent.Key][]consent.Event
}

func stateOf(t *testing.T, s *store.Embedded) state {
	t.Helper()
	ctx := context.Background()
	st := state{Records: map[consent.Key]consent.Record{}, Events: map[consent.Key][]consent.Event{}}
	for _, k := range []consent.Key{k1, k2} {
		r, err := s.Get(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		evs, _, err := s.Events(ctx, k, consent.ConsistencyToken{}, 100)
		if err != nil {
			t.Fatal(err)
		}
		st.Records[k], st.Events[k] = r, evs
	}
	return st
}

func TestEmbeddedReopen(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s, err := store.OpenEmbedded(dir, storetest.ChainKey())
	if err != nil {
		t.Fatal(err)
	}
	var last consent.ConsistencyToken
	ws := writes()
	for _, w := range ws {
		if last, err = s.Apply(ctx, w); err != nil {
			t.Fatal(err)
		}
	}
	before := stateOf(t, s)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = openEmbedded(t, dir)
	if diff := cmp.Diff(before, stateOf(t, s), cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("state after reopen (-before +after):\n%s", diff)
	}
	if n := len(before.Events[k1]); n != 2 {
		t.Errorf("k1 has %d events, want 2", n)
	}
	// Request ids survive: a replay returns the first token.
	tok, err := s.Apply(ctx, ws[0])
	if err != nil || tok != (consent.ConsistencyToken{Seq: 1}) {
		t.Errorf("replay after reopen = %+v, %v; want seq 1", tok, err)
	}
	// The sequence continues where it stopped.
	w := ws[0]
	w.Event.RequestID = "r5"
	if tok, err := s.Apply(ctx, w); err != nil || tok != (consent.ConsistencyToken{Seq: last.Seq + 1}) {
		t.Errorf("first write after reopen = %+v, %v; want seq %d", tok, err, last.Seq+1)
	}
}

func TestEmbeddedInUse(t *testing.T) {
	dir := t.TempDir()
	openEmbedded(t, dir)
	start := time.Now()
	s, err := store.OpenEmbedded(dir, storetest.ChainKey())
	if err == nil {
		s.Close()
		t.Fatal("second OpenEmbedded of an open store succeeded")
	}
	if !strings.Contains(err.Error(), "in use") {
		t.Errorf("second OpenEmbedded error %q, want one mentioning %q", err, "in use")
	}
	t.Logf("refused after %v: %v", time.Since(start).Round(time.Millisecond), err)
}

func TestEmbeddedFileModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "consent")
	s := openEmbedded(t, dir)
	if _, err := s.Apply(context.Background(), writes()[0]); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got&0o077 != 0 {
		t.Errorf("data directory mode %v, want no group or other access", got)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) == 0 {
		t.Fatal("no files in the data directory")
	}
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != 0o600 {
			t.Errorf("%s mode %v, want -rw-------", e.Name(), got)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, store.EmbeddedFile)); err != nil {
		t.Errorf("database file: %v", err)
	}
}

// TestEmbeddedReportsInSequenceOrder: concurrent writers commit in sequence
// order, and the observer must hear them in that order too, so a token that
// has been reported covers every write before it.
func TestEmbeddedReportsInSequenceOrder(t *testing.T) {
	s := openEmbedded(t, t.TempDir())
	var (
		mu   sync.Mutex
		seen []uint64
	)
	s.OnChange(func(_ consent.Key, tok consent.ConsistencyToken) {
		mu.Lock()
		seen = append(seen, tok.Seq)
		mu.Unlock()
	})
	const writers, each = 8, 25
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				_, err := s.Apply(context.Background(), consent.Write{Key: consent.Key{0: byte(w), 1: byte(i)}, Event: consent.Event{
					Kind: consent.EventWithdraw, Proof: consent.Proof{CapturedAt: when}}})
				if err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	want := make([]uint64, writers*each)
	for i := range want {
		want[i] = uint64(i + 1)
	}
	if diff := cmp.Diff(want, seen); diff != "" {
		t.Errorf("observer saw (-want +got):\n%s", diff)
	}
}

// TestEmbeddedApplyBatch: one transaction, per-write outcomes, observers in
// order, and the batch as fast as a bulk load needs (reported, not asserted).
func TestEmbeddedApplyBatch(t *testing.T) {
	s := openEmbedded(t, t.TempDir())
	var seen []uint64
	s.OnChange(func(_ consent.Key, tok consent.ConsistencyToken) { seen = append(seen, tok.Seq) })
	ctx := context.Background()
	erased := consent.Key{9}
	if _, err := s.Apply(ctx, consent.Write{Key: erased, Event: consent.Event{Kind: consent.EventErase, Proof: consent.Proof{CapturedAt: when}}}); err != nil {
		t.Fatal(err)
	}
	proof := consent.Proof{Method: consent.MethodCheckbox, Source: consent.SourceFirstParty, CapturedAt: when.Add(time.Hour)}
	const n, batch = 20000, 1000
	start := time.Now()
	for b := 0; b < n; b += batch {
		ws := make([]consent.Write, batch)
		for i := range ws {
			ws[i] = consent.Write{Key: consent.Key{0: 1, 1: byte((b + i) >> 8), 2: byte(b + i)},
				Event: consent.Event{Kind: consent.EventGrant, Purposes: []string{"email"}, Proof: proof, RequestID: fmt.Sprint("bulk-", b+i)}}
		}
		if b == 0 {
			third := proof
			third.Source, third.ThirdParty = consent.SourceThirdParty, "ListCo"
			ws[5] = consent.Write{Key: erased, Event: consent.Event{Kind: consent.EventGrant, Purposes: []string{"email"}, Proof: third, RequestID: "bought"}}
			ws[7] = ws[6] // a replay inside the batch
		}
		toks, errs, err := s.ApplyBatch(ctx, ws)
		if err != nil {
			t.Fatal(err)
		}
		for i := range ws {
			switch {
			case b == 0 && i == 5:
				if !errors.Is(errs[i], consent.ErrSuppressed) {
					t.Errorf("third-party grant of an erased contact in a batch: %v", errs[i])
				}
			case b == 0 && i == 7:
				if errs[i] != nil || toks[i] != toks[6] {
					t.Errorf("replay inside a batch: %v %v, want token %v", toks[i], errs[i], toks[6])
				}
			case errs[i] != nil:
				t.Errorf("write %d: %v", b+i, errs[i])
			}
		}
	}
	elapsed := time.Since(start)
	want := make([]uint64, n-2+1) // the erase, then every applied write
	for i := range want {
		want[i] = uint64(i + 1)
	}
	if diff := cmp.Diff(want, seen); diff != "" {
		t.Errorf("observer saw (-want +got):\n%s", diff)
	}
	t.Logf("ApplyBatch: %d writes in batches of %d in %v (%.0f writes/s)", n, batch, elapsed, float64(n)/elapsed.Seconds())
}

// TestEmbeddedRefusesAnotherLayout: a data file written by a version with
// another layout is refused with a clear error, never misread.
func TestEmbeddedRefusesAnotherLayout(t *testing.T) {
	dir := t.TempDir()
	db, err := bolt.Open(filepath.Join(dir, store.EmbeddedFile), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucket([]byte("meta")) // the old layout's: no layout mark
		return err
	})
	if err := errors.Join(err, db.Close()); err != nil {
		t.Fatal(err)
	}
	_, err = store.OpenEmbedded(dir, storetest.ChainKey())
	if err == nil || !strings.Contains(err.Error(), "written by another version of consentd") {
		t.Fatalf("OpenEmbedded on another layout = %v, want a refusal", err)
	}
}

// TestEmbeddedStoreID: a store keeps its id across restarts; another data
// directory is another store, and a file made before stores had ids gets
// one, which it keeps.
func TestEmbeddedStoreID(t *testing.T) {
	reopen := func(t *testing.T, dir string) string {
		t.Helper()
		s, err := store.OpenEmbedded(dir, storetest.ChainKey())
		if err != nil {
			t.Fatal(err)
		}
		id := s.StoreID()
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		return id
	}
	dir := t.TempDir()
	first := reopen(t, dir)
	if first == "" {
		t.Fatal("a new embedded store has no id")
	}
	if again := reopen(t, dir); again != first {
		t.Errorf("StoreID after reopening = %q, want %q", again, first)
	}
	if other := reopen(t, t.TempDir()); other == first {
		t.Errorf("two data directories have the same store id %q", other)
	}

	// A file of the version before ids: the same layout, no id.
	db, err := bolt.Open(filepath.Join(dir, store.EmbeddedFile), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte("meta")).Delete([]byte("id")) })
	if err := errors.Join(err, db.Close()); err != nil {
		t.Fatal(err)
	}
	given := reopen(t, dir)
	if given == "" || given == first {
		t.Errorf("StoreID of a file without one = %q, want a new id", given)
	}
	if again := reopen(t, dir); again != given {
		t.Errorf("the id given to an old file did not last: %q, then %q", given, again)
	}
}
