// Package storetest is the conformance suite every consent store passes. It
// checks behaviour through the store's methods only, never its storage, so the
// embedded store and the Redis store are held to the same promises.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/consentd/consentd/consent"
	"github.com/consentd/consentd/internal/chain"
)

// Store is what the suite needs of a store.
type Store interface {
	Get(ctx context.Context, key consent.Key) (consent.Record, error)
	// GetMany reads the records of keys into out (same length); out[i] must
	// be what Get(keys[i]) returns.
	GetMany(ctx context.Context, keys []consent.Key, out []consent.Record) error
	Apply(ctx context.Context, w consent.Write) (consent.ConsistencyToken, error)
	// ApplyBatch applies writes in order, each with its own outcome, as
	// Apply would one by one.
	ApplyBatch(ctx context.Context, ws []consent.Write) ([]consent.ConsistencyToken, []error, error)
	Events(ctx context.Context, key consent.Key, after consent.ConsistencyToken, limit int) ([]consent.Event, bool, error)
	OnChange(fn func(consent.Key, consent.ConsistencyToken))
	// VerifyHistory checks the history's chains and every record against
	// its history.
	VerifyHistory(ctx context.Context) ([]consent.PartitionHistory, error)
}

// ChainKey is the chain key of stores under test.
func ChainKey() *chain.Key {
	k, err := chain.NewKey([]byte("storetest chain secret, 32 bytes"))
	if err != nil {
		panic(err)
	}
	return k
}

// Run runs the suite. open must return a new, empty store that implements
// Tamperer too, and arrange (with t.Cleanup) for it to be closed; it is
// called once per subtest. Subtests do
// not run in parallel: some check that a partition's sequence grows by exactly
// one per write.
func Run(t *testing.T, open func(t *testing.T) Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, open func(t *testing.T) Store)
	}{
		{"UnknownContact", testUnknownContact},
		{"GrantThenGet", testGrantThenGet},
		{"TokensIncrease", testTokensIncrease},
		{"OnChange", testOnChange},
		{"IdempotentReplay", testIdempotentReplay},
		{"RequestIDReuse", testRequestIDReuse},
		{"RequestIDScopeInBatch", testRequestIDScopeInBatch},
		{"EmptyRequestID", testEmptyRequestID},
		{"Withdraw", testWithdraw},
		{"Erase", testErase},
		{"RefusedWrites", testRefusedWrites},
		{"GrantAfterErase", testGrantAfterErase},
		{"EventsPaging", testEventsPaging},
		{"ContactsDoNotMix", testContactsDoNotMix},
		{"CancelledContext", testCancelledContext},
		{"GetMany", testGetMany},
		{"VerifyHistory", testVerifyHistory},
		{"ApplyBatch", testApplyBatch},
		{"Links", testLinks},
		{"Rectify", testRectify},
		{"RefusedLinks", testRefusedLinks},
		{"TamperedLinks", testTamperedLinks},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, open) })
	}
}

// Times are in UTC with nanoseconds, as a store must keep them.
var (
	t0 = time.Date(2025, 6, 1, 9, 30, 0, 123456789, time.UTC)
	t1 = t0.Add(time.Hour)
	t2 = t0.Add(2 * time.Hour)
	t3 = t0.Add(3 * time.Hour)
)

// key returns a key that shares its first 31 bytes with every other key of
// the suite, so a store that matches contacts by prefix mixes them up.
func key(last byte) consent.Key {
	k := consent.Key{
		0xc0, 0x45, 0xe7, 0x11, 0x5a, 0x5a, 0x5a, 0x5a, 0x01, 0x02, 0x03, 0x04, 0x5a, 0x5a, 0x5a, 0x5a,
		0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x00,
	}
	k[31] = last
	return k
}

var (
	alice = key(0x01)
	bob   = key(0x02)
	carol = key(0x00) // sorts before alice
	dave  = key(0xff) // sorts after everyone
)

func firstParty(at time.Time) consent.Proof {
	return consent.Proof{
		Method:        consent.MethodCheckbox,
		Source:        consent.SourceFirstParty,
		EvidenceRef:   "form:signup",
		NoticeVersion: "v3",
		CapturedAt:    at,
		ExpiresAt:     at.AddDate(2, 0, 0),
		Actor:         "web",
		RecordedAt:    at.Add(time.Second),
	}
}

func thirdParty(at time.Time) consent.Proof {
	p := firstParty(at)
	p.Source = consent.SourceThirdParty
	p.ThirdParty = "lists-r-us"
	p.Bundled = true
	return p
}

func grant(k consent.Key, reqID string, at time.Time, purposes ...string) consent.Write {
	return consent.Write{Key: k, Fingerprint: fingerprint(reqID, 'g'), Event: consent.Event{
		Kind: consent.EventGrant, Purposes: purposes, Proof: firstParty(at), RequestID: reqID,
	}}
}

func withdraw(k consent.Key, reqID string, at time.Time, purposes ...string) consent.Write {
	return consent.Write{Key: k, Fingerprint: fingerprint(reqID, 'w'), Event: consent.Event{
		Kind: consent.EventWithdraw, Purposes: purposes, Proof: consent.Proof{CapturedAt: at, Actor: "prefs", RecordedAt: at}, RequestID: reqID,
	}}
}

func erase(k consent.Key, reqID string, at time.Time) consent.Write {
	return consent.Write{Key: k, Fingerprint: fingerprint(reqID, 'e'), Event: consent.Event{
		Kind: consent.EventErase, Proof: consent.Proof{CapturedAt: at, Actor: "dpo", RecordedAt: at}, RequestID: reqID,
	}}
}

// relate is a write of a link, an unlink or a rectification of k naming
// other, an identifier of kind otherKind (the zero key and IDUnknown: an
// unlink of every link).
func relate(k consent.Key, kind consent.EventKind, other consent.Key, otherKind consent.IDKind, reqID string, at time.Time) consent.Write {
	return consent.Write{Key: k, Fingerprint: fingerprint(reqID, 'l'+byte(kind)), Event: consent.Event{
		Kind: kind, Proof: consent.Proof{CapturedAt: at, Actor: "crm", RecordedAt: at}, RequestID: reqID,
		Other: consent.Link{Key: other, Kind: otherKind},
	}}
}

// fingerprint stands in for the hash of a request as sent.
func fingerprint(reqID string, kind byte) [32]byte {
	var fp [32]byte
	fp[0] = kind
	copy(fp[1:], reqID)
	return fp
}

// applied is the event a store should report for w written at tok.
func applied(w consent.Write, tok consent.ConsistencyToken) consent.Event {
	e := w.Event
	e.Token = tok
	return e
}

// changes records OnChange calls.
type changes struct {
	mu    sync.Mutex
	calls []change
}

type change struct {
	Key   consent.Key
	Token consent.ConsistencyToken
}

func (c *changes) record(k consent.Key, tok consent.ConsistencyToken) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, change{k, tok})
}

func (c *changes) take() []change {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.calls
	c.calls = nil
	return out
}

// fixture is an open store with its change recorder.
type fixture struct {
	t   *testing.T
	s   Store
	chg *changes
}

func newFixture(t *testing.T, open func(t *testing.T) Store) *fixture {
	t.Helper()
	s := open(t)
	c := &changes{}
	s.OnChange(c.record)
	return &fixture{t: t, s: s, chg: c}
}

// apply writes w, which must succeed.
func (f *fixture) apply(w consent.Write) consent.ConsistencyToken {
	f.t.Helper()
	tok, err := f.s.Apply(context.Background(), w)
	if err != nil {
		f.t.Fatalf("Apply(%v %v, request %q): %v", w.Event.Kind, w.Event.Purposes, w.Event.RequestID, err)
	}
	if tok.IsZero() {
		f.t.Fatalf("Apply(%v %v, request %q) returned the zero token", w.Event.Kind, w.Event.Purposes, w.Event.RequestID)
	}
	return tok
}

// applyErr applies w alone, through Apply or, with batch, as a batch of
// one, and returns its error: a refusal must be the same either way.
func (f *fixture) applyErr(w consent.Write, batch bool) error {
	if !batch {
		_, err := f.s.Apply(context.Background(), w)
		return err
	}
	_, errs, err := f.s.ApplyBatch(context.Background(), []consent.Write{w})
	if err == nil {
		err = errs[0]
	}
	return err
}

func (f *fixture) get(k consent.Key) consent.Record {
	f.t.Helper()
	r, err := f.s.Get(context.Background(), k)
	if err != nil {
		f.t.Fatalf("Get(%v): %v", k, err)
	}
	return r
}

// events returns every event of k.
func (f *fixture) events(k consent.Key) []consent.Event {
	f.t.Helper()
	evs, more, err := f.s.Events(context.Background(), k, consent.ConsistencyToken{}, 1000)
	if err != nil {
		f.t.Fatalf("Events(%v): %v", k, err)
	}
	if more {
		f.t.Fatalf("Events(%v, limit 1000) says more follow; the suite writes fewer", k)
	}
	return evs
}

// snapshot is everything observable about some contacts.
type snapshot struct {
	Records map[consent.Key]consent.Record
	Events  map[consent.Key][]consent.Event
}

func (f *fixture) snapshot(keys ...consent.Key) snapshot {
	f.t.Helper()
	s := snapshot{Records: map[consent.Key]consent.Record{}, Events: map[consent.Key][]consent.Event{}}
	for _, k := range keys {
		s.Records[k] = f.get(k)
		s.Events[k] = f.events(k)
	}
	return s
}

// unchanged fails the test if the contacts differ from before or a change was
// reported.
func (f *fixture) unchanged(before snapshot, keys ...consent.Key) {
	f.t.Helper()
	if diff := cmp.Diff(before, f.snapshot(keys...), cmpopts.EquateEmpty()); diff != "" {
		f.t.Errorf("store changed (-before +after):\n%s", diff)
	}
	if got := f.chg.take(); len(got) != 0 {
		f.t.Errorf("OnChange called %d times (%v), want 0", len(got), got)
	}
}

func diffRecord(t *testing.T, want, got consent.Record) {
	t.Helper()
	if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("Get mismatch (-want +got):\n%s", diff)
	}
}

func diffEvents(t *testing.T, want, got []consent.Event) {
	t.Helper()
	if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("Events mismatch (-want +got):\n%s", diff)
	}
}

func testUnknownContact(t *testing.T, open func(t *testing.T) Store) {
	f := newFixture(t, open)
	f.apply(grant(bob, "b1", t0, "email")) // a neighbour must not leak in
	diffRecord(t, consent.Record{}, f.get(alice))
	evs, more, err := f.s.Events(context.Background(), alice, consent.ConsistencyToken{}, 10)
	if err != nil || len(evs) != 0 || more {
		t.Errorf("Events(unknown) = %v, %v, %v; want none, false, nil", evs, more, err)
	}
}

func testGrantThenGet(t *testing.T, open func(t *testing.T) Store) {
	f := newFixture(t, open)
	w := grant(alice, "g1", t0, "email", "sms")
	w.Event.Proof = thirdParty(t0) // every proof field set
	tok := f.apply(w)
	p := w.Event.Proof
	diffRecord(t, consent.Record{
		Token: tok,
		Purposes: map[string]consent.PurposeRecord{
			"email": {Grant: &p},
			"sms":   {Grant: &p},
		},
	}, f.get(alice))
	diffEvents(t, []consent.Event{applied(w, tok)}, f.events(alice))
}

func testTokensIncrease(t *testing.T, open func(t *testing.T) Store) {
	f := newFixture(t, open)
	writes := []consent.Write{
		grant(alice, "t1", t0, "email"),
		grant(alice, "t2", t1, "sms"),
		withdraw(alice, "t3", t2, "email"),
		grant(alice, "", t2, "ads"),
		withdraw(alice, "t5", t3),
		erase(alice, "t6", t3),
	}
	var prev consent.ConsistencyToken
	for i, w := range writes {
		tok := f.apply(w)
		if i > 0 && (tok.Partition != prev.Partition || tok.Seq <= prev.Seq) {
			t.Errorf("write %d: token %+v does not follow %+v in the same partition", i, tok, prev)
		}
		if got := f.get(alice).Token; got != tok {
			t.Errorf("write %d: record token %+v, Apply returned %+v", i, got, tok)
		}
		prev = tok
	}
}

func testOnChange(t *testing.T, open func(t *testing.T) Store) {
	f := newFixture(t, open)
	writes := []consent.Write{
		grant(alice, "c1", t0, "email"),
		grant(bob, "c2", t0, "email"),
		withdraw(alice, "c3", t1, "email"),
		grant(alice, "", t1, "sms"),
		erase(bob, "c5", t2),
	}
	for _, w := range writes {
		tok := f.apply(w)
		// Taken right after Apply returns: the call must already have happened.
		want := []change{{w.Key, tok}}
		if diff := cmp.Diff(want, f.chg.take()); diff != "" {
			t.Errorf("OnChange after %v of %v (-want +got):\n%s", w.Event.Kind, w.Key, diff)
		}
	}
}

func testIdempotentReplay(t *testing.T, open func(t *testing.T) Store) {
	tests := []struct {
		name  string
		first consent.Write
	}{
		{"grant", grant(alice, "r1", t0, "email")},
		{"withdraw", withdraw(alice, "r1", t1, "email")},
		{"withdraw all", withdraw(alice, "r1", t1)},
		{"erase", erase(alice, "r1", t1)},
		{"link", relate(alice, consent.EventLink, bob, consent.IDPhone, "r1", t1)},
		{"unlink", relate(alice, consent.EventUnlink, consent.Key{}, consent.IDUnknown, "r1", t1)},
		{"rectify to", relate(alice, consent.EventRectifyTo, bob, consent.IDEmail, "r1", t1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, open)
			f.apply(grant(alice, "setup", t0, "email", "sms"))
			tok := f.apply(tt.first)
			f.chg.take()
			before := f.snapshot(alice)
			for i := range 3 {
				got, err := f.s.Apply(context.Background(), tt.first)
				if err != nil {
					t.Fatalf("replay %d: %v", i, err)
				}
				if got != tok {
					t.Errorf("replay %d: token %+v, want the first one %+v", i, got, tok)
				}
			}
			// A store may report a replay again (with the first token: a
			// cache dropping the contact once more is harmless), never as a
			// new write.
			for _, c := range f.chg.take() {
				if c.Key != alice || c.Token != tok {
					t.Errorf("replay reported as %v, want nothing or the first token %v", c, tok)
				}
			}
			f.unchanged(before, alice)
			// The replay consumed no sequence number.
			if next := f.apply(grant(alice, "after", t3, "ads")); next.Partition != tok.Partition || next.Seq != tok.Seq+1 {
				t.Errorf("next write token %+v, want seq %d", next, tok.Seq+1)
			}
		})
	}
}

func testRequestIDReuse(t *testing.T, open func(t *testing.T) Store) {
	f := newFixture(t, open)
	first := grant(alice, "dup", t0, "email")
	f.apply(first)
	f.chg.take()
	before := f.snapshot(alice, bob)

	tests := []struct {
		name string
		w    consent.Write
	}{
		{"same event, other fingerprint", func() consent.Write {
			w := first
			w.Fingerprint[31] ^= 1
			return w
		}()},
		{"other event, other fingerprint", withdraw(alice, "dup", t1, "email")},
		// Request ids are one space per caller: the same id for another
		// contact is another request, however alike.
		{"same request, other contact", func() consent.Write { w := first; w.Key = bob; return w }()},
		{"other contact, other kind", withdraw(bob, "dup", t1, "email")},
		{"same fingerprint, other kind", func() consent.Write { w := first; w.Event.Kind = consent.EventWithdraw; return w }()},
	}
	for _, tt := range tests {
		for _, batch := range []bool{false, true} {
			err := f.applyErr(tt.w, batch)
			if !errors.Is(err, consent.ErrInvalid) {
				t.Errorf("%s (batch %v): %v; want an error wrapping consent.ErrInvalid", tt.name, batch, err)
			}
			var fe *consent.FieldError
			if !errors.As(err, &fe) || fe.Field != "request_id" {
				t.Errorf("%s (batch %v): error %v (%T), want a *consent.FieldError for request_id", tt.name, batch, err, err)
			}
			f.unchanged(before, alice, bob)
		}
	}
	// A retry still returns the first token and applies nothing.
	if tok := f.apply(first); tok != f.get(alice).Token {
		t.Errorf("retry token %+v, want the first %+v", tok, f.get(alice).Token)
	}
	f.chg.take() // a store may tell of a replay (Redis does)
	f.unchanged(before, alice, bob)
	// Another caller's id space is its own: the same id is another request,
	// on another contact and on the same one.
	other := func(w consent.Write) consent.Write { w.Caller = "another caller"; return w }
	tb := f.apply(other(withdraw(bob, "dup", t1, "email")))
	ta := f.apply(other(withdraw(alice, "dup2", t1, "email")))
	if tb == ta {
		t.Errorf("two writes of another caller got one token %+v", ta)
	}
	if tok := f.apply(other(withdraw(bob, "dup", t1, "email"))); tok != tb {
		t.Errorf("another caller's retry: token %+v, want its first %+v", tok, tb)
	}
	if _, err := f.s.Apply(context.Background(), other(withdraw(alice, "dup", t1, "email"))); !errors.Is(err, consent.ErrInvalid) {
		t.Errorf("another caller reusing its own id for another contact: %v, want ErrInvalid", err)
	}
}

// testRequestIDScopeInBatch: within one batch and across batches, a
// caller's request id names one request whatever the contact; a repeat of
// the same request in a batch gets the first outcome.
func testRequestIDScopeInBatch(t *testing.T, open func(t *testing.T) Store) {
	f := newFixture(t, open)
	ctx := context.Background()
	a := grant(alice, "b1", t0, "email")
	ws := []consent.Write{a, grant(dave, "b1", t0, "email"), a, grant(bob, "b2", t0, "email")}
	toks, errs, err := f.s.ApplyBatch(ctx, ws)
	if err != nil {
		t.Fatal(err)
	}
	var fe *consent.FieldError
	if errs[0] != nil || errs[2] != nil || errs[3] != nil || !errors.As(errs[1], &fe) || fe.Field != "request_id" {
		t.Fatalf("batch outcomes %v, want the second refused for its request_id, the others applied", errs)
	}
	if toks[2] != toks[0] {
		t.Errorf("the repeat of a request in a batch: token %+v, want the first's %+v", toks[2], toks[0])
	}
	if r := f.get(dave); len(r.Purposes) != 0 {
		t.Errorf("the refused write changed its contact: %+v", r)
	}
	// Across batches too, and a retry of the whole batch applies nothing.
	before := f.snapshot(alice, bob, dave)
	toks2, errs2, err := f.s.ApplyBatch(ctx, []consent.Write{grant(dave, "b2", t0, "email"), a, ws[3]})
	if err != nil {
		t.Fatal(err)
	}
	if !errors.As(errs2[0], &fe) || fe.Field != "request_id" || errs2[1] != nil || errs2[2] != nil || toks2[1] != toks[0] || toks2[2] != toks[3] {
		t.Errorf("second batch: %v %v; want the first refused, the others replayed with tokens %v %v", toks2, errs2, toks[0], toks[3])
	}
	f.chg.take() // a store may tell of a replay (Redis does)
	f.unchanged(before, alice, bob, dave)
}

func testEmptyRequestID(t *testing.T, open func(t *testing.T) Store) {
	f := newFixture(t, open)
	w := grant(alice, "", t0, "email")
	var toks []consent.ConsistencyToken
	for range 3 {
		toks = append(toks, f.apply(w))
	}
	if toks[0] == toks[1] || toks[1] == toks[2] {
		t.Errorf("writes without a request id were deduplicated: tokens %v", toks)
	}
	want := []consent.Event{applied(w, toks[0]), applied(w, toks[1]), applied(w, toks[2])}
	diffEvents(t, want, f.events(alice))
	if got := f.chg.take(); len(got) != 3 {
		t.Errorf("OnChange called %d times, want 3", len(got))
	}
}

func testWithdraw(t *testing.T, open func(t *testing.T) Store) {
	f := newFixture(t, open)
	g := grant(alice, "w1", t0, "email", "sms")
	p := g.Event.Proof
	f.apply(g)

	tok := f.apply(withdraw(alice, "w2", t1, "email"))
	diffRecord(t, consent.Record{
		Token: tok,
		Purposes: map[string]consent.PurposeRecord{
			"email": {Grant: &p, WithdrawnAt: t1},
			"sms":   {Grant: &p},
		},
	}, f.get(alice))

	tok = f.apply(withdraw(alice, "w3", t2))
	diffRecord(t, consent.Record{
		Token:          tok,
		WithdrawnAllAt: t2,
		Purposes: map[string]consent.PurposeRecord{
			"email": {Grant: &p, WithdrawnAt: t1},
			"sms":   {Grant: &p},
		},
	}, f.get(alice))
	if n := len(f.events(alice)); n != 3 {
		t.Errorf("Events has %d events, want 3", n)
	}
}

func testErase(t *testing.T, open func(t *testing.T) Store) {
	f := newFixture(t, open)
	f.apply(grant(alice, "e1", t0, "email", "sms"))
	f.apply(withdraw(alice, "e2", t1, "sms"))
	f.apply(grant(bob, "e3", t0, "email"))
	bobBefore := f.snapshot(bob)

	e := erase(alice, "e4", t2)
	tok := f.apply(e)
	diffRecord(t, consent.Record{Token: tok, ErasedAt: t2}, f.get(alice))
	diffEvents(t, []consent.Event{applied(e, tok)}, f.events(alice))
	f.chg.take()
	// Erasing one contact leaves its neighbour alone.
	f.unchanged(bobBefore, bob)
}

// testRefusedWrites: a write the rules refuse returns the rule's error and
// changes nothing, not even the sequence.
func testRefusedWrites(t *testing.T, open func(t *testing.T) Store) {
	thirdPartyGrant := grant(alice, "x1", t3, "email")
	thirdPartyGrant.Event.Proof = thirdParty(t3)
	unknownKind := grant(alice, "x4", t3, "email")
	unknownKind.Event.Kind = consent.EventKind(99)

	tests := []struct {
		name string
		w    consent.Write
		want error
	}{
		{"third-party grant after erase", thirdPartyGrant, consent.ErrSuppressed},
		{"first-party grant captured before erase", grant(alice, "x2", t1, "email"), consent.ErrSuppressed},
		{"first-party grant captured at erase", grant(alice, "x3", t2, "email"), consent.ErrSuppressed},
		{"unknown event kind", unknownKind, consent.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, open)
			f.apply(grant(alice, "setup", t0, "email"))
			erased := f.apply(erase(alice, "erase", t2))
			f.chg.take()
			before := f.snapshot(alice)

			tok, err := f.s.Apply(context.Background(), tt.w)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Apply = %+v, %v; want an error wrapping %v", tok, err, tt.want)
			}
			f.unchanged(before, alice)

			// The refused write took no sequence number, and its request id
			// was not remembered: the id may carry a valid request now.
			retry := grant(alice, tt.w.Event.RequestID, t3, "sms")
			if next := f.apply(retry); next.Partition != erased.Partition || next.Seq != erased.Seq+1 {
				t.Errorf("next write token %+v, want partition %d seq %d", next, erased.Partition, erased.Seq+1)
			}
		})
	}
}

func testGrantAfterErase(t *testing.T, open func(t *testing.T) Store) {
	f := newFixture(t, open)
	f.apply(grant(alice, "a1", t0, "email"))
	e := erase(alice, "a2", t1)
	etok := f.apply(e)
	g := grant(alice, "a3", t2, "email")
	p := g.Event.Proof
	gtok := f.apply(g)
	diffRecord(t, consent.Record{
		Token:    gtok,
		ErasedAt: t1,
		Purposes: map[string]consent.PurposeRecord{"email": {Grant: &p}},
	}, f.get(alice))
	diffEvents(t, []consent.Event{applied(e, etok), applied(g, gtok)}, f.events(alice))
}

func testEventsPaging(t *testing.T, open func(t *testing.T) Store) {
	tests := []struct {
		name   string
		writes int
		limit  int
		// relating: alice's writes cycle through a grant, a link, an
		// unlink and a rectification, whose Other each page must carry.
		relating bool
	}{
		{"one page, room to spare", 3, 10, false},
		{"exactly one page", 4, 4, false},
		{"partial last page", 7, 3, false},
		{"exact last page", 6, 3, false},
		{"pages of one", 4, 1, false},
		{"relating events, partial last page", 7, 2, true},
		{"relating events, pages of one", 5, 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, open)
			var want []consent.Event
			for i := range tt.writes {
				// Neighbours on both sides write in between.
				f.apply(grant(carol, "", t0, "email"))
				at := t0.Add(time.Duration(i) * time.Minute)
				id := fmt.Sprintf("p%d", i)
				w := grant(alice, id, at, fmt.Sprintf("purpose-%d", i))
				if tt.relating {
					switch i % 4 {
					case 1:
						w = relate(alice, consent.EventLink, bob, consent.IDPhone, id, at)
					case 2:
						w = relate(alice, consent.EventUnlink, bob, consent.IDPhone, id, at)
					case 3:
						w = relate(alice, consent.EventRectifyFrom, dave, consent.IDExternal, id, at)
					}
				}
				want = append(want, applied(w, f.apply(w)))
				f.apply(grant(dave, "", t0, "email"))
			}
			diffEvents(t, want, f.pages(alice, tt.limit, tt.writes))
		})
	}
}

// pages reads every event of k, limit at a time, checking each page: at
// most limit events, full while more follow, and more set exactly while
// fewer than total have been read.
func (f *fixture) pages(k consent.Key, limit, total int) []consent.Event {
	t := f.t
	t.Helper()
	var (
		got   []consent.Event
		after consent.ConsistencyToken
	)
	for page := 0; ; page++ {
		if page > total {
			t.Fatalf("paging did not end after %d pages", page)
		}
		evs, more, err := f.s.Events(context.Background(), k, after, limit)
		if err != nil {
			t.Fatalf("page %d: %v", page, err)
		}
		if len(evs) > limit {
			t.Errorf("page %d: %d events, limit %d", page, len(evs), limit)
		}
		wantMore := len(got)+len(evs) < total
		if more != wantMore {
			t.Errorf("page %d (after %+v): more = %v, want %v", page, after, more, wantMore)
		}
		if more && len(evs) != limit {
			t.Errorf("page %d: %d events with more to follow, want a full page of %d", page, len(evs), limit)
		}
		got = append(got, evs...)
		if !more || len(evs) == 0 {
			return got
		}
		after = evs[len(evs)-1].Token
	}
}

func testContactsDoNotMix(t *testing.T, open func(t *testing.T) Store) {
	f := newFixture(t, open)
	keys := []consent.Key{carol, alice, bob, dave}
	want := map[consent.Key][]consent.Event{}
	for round := range 3 {
		for i, k := range keys {
			w := grant(k, fmt.Sprintf("r%d-%d", round, i), t0.Add(time.Duration(round)*time.Hour), fmt.Sprintf("purpose-%d-%d", i, round))
			want[k] = append(want[k], applied(w, f.apply(w)))
		}
	}
	for _, k := range keys {
		diffEvents(t, want[k], f.events(k))
		var wantNames, gotNames []string
		for _, e := range want[k] {
			wantNames = append(wantNames, e.Purposes...)
		}
		for name := range f.get(k).Purposes {
			gotNames = append(gotNames, name)
		}
		if diff := cmp.Diff(wantNames, gotNames, cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
			t.Errorf("purposes of %v (-want +got):\n%s", k, diff)
		}
		// Paging from another contact's token stays within this contact.
		for _, other := range keys {
			after := want[other][1].Token
			var wantAfter []consent.Event
			for _, e := range want[k] {
				if e.Token.Seq > after.Seq {
					wantAfter = append(wantAfter, e)
				}
			}
			evs, more, err := f.s.Events(context.Background(), k, after, 100)
			if err != nil || more {
				t.Fatalf("Events(%v, after %+v) = %v, %v, %v", k, after, evs, more, err)
			}
			diffEvents(t, wantAfter, evs)
		}
	}

	// Erasing one contact erases only it.
	e := erase(alice, "erase", t3)
	tok := f.apply(e)
	diffEvents(t, []consent.Event{applied(e, tok)}, f.events(alice))
	for _, k := range []consent.Key{carol, bob, dave} {
		diffEvents(t, want[k], f.events(k))
	}
}

func testCancelledContext(t *testing.T, open func(t *testing.T) Store) {
	f := newFixture(t, open)
	last := f.apply(grant(alice, "c0", t0, "email"))
	f.chg.take()
	before := f.snapshot(alice)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	writes := []consent.Write{
		grant(alice, "c1", t1, "sms"),
		grant(alice, "", t1, "sms"),
		withdraw(alice, "c2", t1),
		erase(alice, "c3", t1),
	}
	for _, w := range writes {
		if tok, err := f.s.Apply(ctx, w); !errors.Is(err, context.Canceled) {
			t.Errorf("Apply(cancelled, %v) = %+v, %v; want context.Canceled", w.Event.Kind, tok, err)
		}
	}
	if r, err := f.s.Get(ctx, alice); !errors.Is(err, context.Canceled) {
		t.Errorf("Get(cancelled) = %+v, %v; want context.Canceled", r, err)
	}
	if evs, _, err := f.s.Events(ctx, alice, consent.ConsistencyToken{}, 10); !errors.Is(err, context.Canceled) {
		t.Errorf("Events(cancelled) = %v, %v; want context.Canceled", evs, err)
	}
	f.unchanged(before, alice)
	// Nothing was half-written: the request ids are free and the sequence
	// continues.
	if next := f.apply(grant(alice, "c1", t1, "sms")); next.Partition != last.Partition || next.Seq != last.Seq+1 {
		t.Errorf("next write token %+v, want seq %d", next, last.Seq+1)
	}
}

// spread returns n keys that differ in the bytes a key's partition is taken
// from (8:12), as well as in the last byte: keys i and j fall in different
// partitions whenever the store has more than max(i, j) of them. With the 16
// partitions the Redis tests use, keys 0 to 7 hash to slots on all three
// masters of a 3-master Cluster, so one GetMany spans several nodes.
func spread(n int) []consent.Key {
	keys := make([]consent.Key, n)
	for i := range keys {
		k := key(0x80 + byte(i))
		k[8], k[9], k[10], k[11] = 0, 0, 0, byte(i)
		keys[i] = k
	}
	return keys
}

func testGetMany(t *testing.T, open func(t *testing.T) Store) {
	f := newFixture(t, open)
	ks := spread(8)
	granted, withdrawn, erased, regranted := ks[0], ks[1], ks[2], ks[3]
	never := []consent.Key{ks[4], ks[5], ks[6], ks[7], bob} // never written
	f.apply(grant(alice, "m1", t0, "email"))
	f.apply(grant(granted, "m2", t0, "email", "sms"))
	f.apply(grant(withdrawn, "m3", t0, "email", "sms"))
	f.apply(withdraw(withdrawn, "m4", t1, "sms"))
	f.apply(grant(erased, "m5", t0, "email"))
	f.apply(erase(erased, "m6", t1))
	f.apply(grant(regranted, "m7", t0, "email"))
	f.apply(erase(regranted, "m8", t1))
	f.apply(grant(regranted, "m9", t2, "sms"))
	if r := f.get(erased); r.ErasedAt.IsZero() || len(r.Purposes) != 0 {
		t.Fatalf("setup: the erased contact's record is %+v", r)
	}

	ctx := context.Background()
	tests := []struct {
		name string
		keys []consent.Key
	}{
		{"one written", []consent.Key{granted}},
		{"one never written", []consent.Key{bob}},
		{"mixed", []consent.Key{
			never[0], granted, erased, never[4], withdrawn, alice, never[1], regranted, never[2], never[3],
		}},
		{"duplicates", []consent.Key{
			granted, never[0], granted, erased, never[0], erased, alice, granted, alice,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Filled with a record no key has: every slot must be written,
			// a key with no record included.
			junk := consent.Record{Token: consent.ConsistencyToken{Partition: 99, Seq: 99}, ErasedAt: t3,
				Purposes: map[string]consent.PurposeRecord{"junk": {WithdrawnAt: t3}}}
			out := make([]consent.Record, len(tt.keys))
			for i := range out {
				out[i] = junk
			}
			if err := f.s.GetMany(ctx, tt.keys, out); err != nil {
				t.Fatalf("GetMany: %v", err)
			}
			for i, k := range tt.keys {
				if diff := cmp.Diff(f.get(k), out[i], cmpopts.EquateEmpty()); diff != "" {
					t.Errorf("GetMany out[%d] (%v) differs from Get (-Get +GetMany):\n%s", i, k, diff)
				}
			}
		})
	}

	t.Run("empty", func(t *testing.T) {
		if err := f.s.GetMany(ctx, nil, nil); err != nil {
			t.Errorf("GetMany(nil, nil) = %v, want nil", err)
		}
		if err := f.s.GetMany(ctx, []consent.Key{}, []consent.Record{}); err != nil {
			t.Errorf("GetMany([], []) = %v, want nil", err)
		}
	})

	t.Run("mismatched out", func(t *testing.T) {
		for _, tc := range []struct{ keys, out int }{{2, 1}, {1, 2}, {0, 1}, {1, 0}} {
			keys := ks[:tc.keys]
			out := make([]consent.Record, tc.out)
			if err := f.s.GetMany(ctx, keys, out); err == nil {
				t.Errorf("GetMany(%d keys, %d outputs) = nil, want an error", tc.keys, tc.out)
			}
		}
	})

	t.Run("cancelled context", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		keys := []consent.Key{granted, bob}
		if err := f.s.GetMany(cctx, keys, make([]consent.Record, len(keys))); !errors.Is(err, context.Canceled) {
			t.Errorf("GetMany(cancelled) = %v, want context.Canceled", err)
		}
	})

	// A write between two GetMany calls shows in the second.
	t.Run("after a write", func(t *testing.T) {
		keys := []consent.Key{granted, never[0], erased}
		f.apply(withdraw(granted, "m10", t3))
		f.apply(grant(never[0], "m11", t3, "email"))
		out := make([]consent.Record, len(keys))
		if err := f.s.GetMany(ctx, keys, out); err != nil {
			t.Fatalf("GetMany: %v", err)
		}
		if out[0].WithdrawnAllAt.IsZero() || out[1].Token.IsZero() {
			t.Errorf("GetMany did not see the writes: %+v, %+v", out[0], out[1])
		}
		for i, k := range keys {
			if diff := cmp.Diff(f.get(k), out[i], cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("GetMany out[%d] (%v) differs from Get (-Get +GetMany):\n%s", i, k, diff)
			}
		}
	})
}

// testVerifyHistory: a history written through the store, erasures and
// refused writes included, verifies intact, and accounts for every event.
func testVerifyHistory(t *testing.T, open func(t *testing.T) Store) {
	f := newFixture(t, open)
	report := func() []consent.PartitionHistory {
		t.Helper()
		r, err := f.s.VerifyHistory(context.Background())
		if err != nil {
			t.Fatalf("VerifyHistory: %v", err)
		}
		return r
	}
	if r := report(); !consent.Intact(r) {
		t.Fatalf("an empty store does not verify: %+v", r)
	}
	var last consent.ConsistencyToken
	for _, w := range []consent.Write{
		grant(alice, "v1", t0, "email", "sms"),
		grant(bob, "v2", t0, "email"),
		withdraw(alice, "v3", t1, "sms"),
		erase(alice, "v4", t2),
		grant(carol, "v5", t1, "email"),
		erase(alice, "v6", t3), // an erasure of an erasure keeps its tombstones
		grant(alice, "v7", t3.Add(time.Hour), "email"),
		withdraw(bob, "v8", t2),
	} {
		last = f.apply(w)
	}
	refused := grant(alice, "v9", t0, "email")
	refused.Event.Proof = thirdParty(t0)
	if _, err := f.s.Apply(context.Background(), refused); err == nil {
		t.Fatal("a third-party grant after erasure was accepted")
	}
	r := report()
	if !consent.Intact(r) {
		t.Fatalf("history written by the store does not verify: %+v", r)
	}
	var events, erased, contacts int
	var head uint64
	for _, p := range r {
		events += p.Events
		erased += p.Erased
		contacts += p.Contacts
		if p.Partition == last.Partition {
			head = p.HeadSeq
		}
	}
	// Alice's first three events went with the first erasure, which went
	// with the second: 8 written, 5 present.
	got := []int{events, erased, contacts}
	if diff := cmp.Diff([]int{5, 3, 3}, got); diff != "" {
		t.Errorf("events, erased, contacts (-want +got):\n%s", diff)
	}
	if head < last.Seq {
		t.Errorf("the report's head of partition %d is %d, before the last write's %d", last.Partition, head, last.Seq)
	}
}

// testApplyBatch: a batch gives each write the outcome Apply would give it
// in order (replays inside the batch, refusals, an erasure of a contact
// granted earlier in the same batch), reports each applied write, leaves a
// history that verifies, and a second run of the same batch replays every
// write and changes nothing.
func testApplyBatch(t *testing.T, open func(t *testing.T) Store) {
	f := newFixture(t, open)
	reused := grant(alice, "b3", t2, "email") // b3 is alice's withdrawal below
	batch := []consent.Write{
		grant(alice, "b1", t0, "email", "sms"),
		grant(bob, "b2", t0, "email"),
		withdraw(alice, "b3", t1, "email"),
		grant(alice, "b1", t0, "email", "sms"), // a replay of the first
		erase(dave, "b4", t2),
		grant(dave, "b5", t1, "email"), // captured before the erasure
		erase(bob, "b6", t2),           // removes bob's grant of this batch
		reused,
		grant(carol, "", t0, "sms"),
	}
	ctx := context.Background()
	toks, errs, err := f.s.ApplyBatch(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	wantErr := map[int]error{5: consent.ErrSuppressed, 7: consent.ErrInvalid}
	var reported []change
	for i := range batch {
		if want := wantErr[i]; want != nil {
			if !errors.Is(errs[i], want) {
				t.Errorf("write %d: error %v, want %v", i, errs[i], want)
			}
			continue
		}
		if errs[i] != nil || toks[i].IsZero() {
			t.Fatalf("write %d: %v, %v", i, toks[i], errs[i])
		}
		reported = append(reported, change{batch[i].Key, toks[i]})
	}
	if toks[3] != toks[0] {
		t.Errorf("replay inside the batch got %v, want the first token %v", toks[3], toks[0])
	}
	// Each applied write is reported; a store may report a replay again.
	set := func(cs []change) map[change]bool {
		m := map[change]bool{}
		for _, c := range cs {
			m[c] = true
		}
		return m
	}
	if diff := cmp.Diff(set(reported), set(f.chg.take())); diff != "" {
		t.Errorf("OnChange (-want +got):\n%s", diff)
	}
	p := firstParty(t0)
	diffRecord(t, consent.Record{Token: toks[2], Purposes: map[string]consent.PurposeRecord{
		"email": {Grant: &p, WithdrawnAt: t1}, "sms": {Grant: &p}}}, f.get(alice))
	diffRecord(t, consent.Record{Token: toks[6], ErasedAt: t2}, f.get(bob))
	diffRecord(t, consent.Record{Token: toks[4], ErasedAt: t2}, f.get(dave))
	diffEvents(t, []consent.Event{applied(batch[0], toks[0]), applied(batch[2], toks[2])}, f.events(alice))
	diffEvents(t, []consent.Event{applied(batch[6], toks[6])}, f.events(bob))
	parts, err := f.s.VerifyHistory(ctx)
	if err != nil || !consent.Intact(parts) {
		t.Fatalf("VerifyHistory after a batch: %+v, %v", parts, err)
	}

	before := f.snapshot(alice, bob, carol, dave)
	again, errs2, err := f.s.ApplyBatch(ctx, batch[:len(batch)-1]) // carol's grant has no request id
	if err != nil {
		t.Fatal(err)
	}
	for i := range again {
		if want := wantErr[i]; want != nil {
			if !errors.Is(errs2[i], want) {
				t.Errorf("second run, write %d: error %v, want %v", i, errs2[i], want)
			}
		} else if errs2[i] != nil || again[i] != toks[i] {
			t.Errorf("second run, write %d: %v, %v; want the first token %v", i, again[i], errs2[i], toks[i])
		}
	}
	f.chg.take() // replays are reported, as Apply reports them
	f.unchanged(before, alice, bob, carol, dave)
}

// verifyIntact fails the test unless the store's history verifies.
func (f *fixture) verifyIntact(when string) {
	f.t.Helper()
	parts, err := f.s.VerifyHistory(context.Background())
	if err != nil {
		f.t.Fatalf("VerifyHistory %s: %v", when, err)
	}
	if !consent.Intact(parts) {
		f.t.Errorf("VerifyHistory %s: breaks %+v", when, parts)
	}
}

// testLinks: links, unlinks and an erasure fold into the record's links
// (sorted by key, kind kept), and each event comes back with its Other.
func testLinks(t *testing.T, open func(t *testing.T) Store) {
	f := newFixture(t, open)
	lb := consent.Link{Key: bob, Kind: consent.IDPhone}
	lc := consent.Link{Key: carol, Kind: consent.IDEmail}
	ld := consent.Link{Key: dave, Kind: consent.IDExternal}
	g := grant(alice, "l0", t0, "email")
	p := g.Event.Proof
	var want []consent.Event
	write := func(ws ...consent.Write) consent.ConsistencyToken {
		t.Helper()
		var tok consent.ConsistencyToken
		for _, w := range ws {
			tok = f.apply(w)
			want = append(want, applied(w, tok))
		}
		return tok
	}
	steps := []struct {
		name   string
		writes []consent.Write
		links  []consent.Link
	}{
		{"link three", []consent.Write{
			g,
			relate(alice, consent.EventLink, bob, consent.IDPhone, "l1", t1),
			relate(alice, consent.EventLink, dave, consent.IDExternal, "l2", t1),
			relate(alice, consent.EventLink, carol, consent.IDEmail, "l3", t1),
		}, []consent.Link{lc, lb, ld}},
		{"link one again", []consent.Write{relate(alice, consent.EventLink, bob, consent.IDPhone, "l4", t1)}, []consent.Link{lc, lb, ld}},
		{"unlink one", []consent.Write{relate(alice, consent.EventUnlink, bob, consent.IDPhone, "l5", t2)}, []consent.Link{lc, ld}},
		{"unlink every link", []consent.Write{relate(alice, consent.EventUnlink, consent.Key{}, consent.IDUnknown, "l6", t2)}, nil},
		{"link after unlinking", []consent.Write{relate(alice, consent.EventLink, dave, consent.IDExternal, "l7", t2)}, []consent.Link{ld}},
	}
	for _, st := range steps {
		tok := write(st.writes...)
		diffRecord(t, consent.Record{Token: tok, Purposes: map[string]consent.PurposeRecord{"email": {Grant: &p}}, Links: st.links}, f.get(alice))
		diffEvents(t, want, f.events(alice))
		f.verifyIntact("after " + st.name)
	}
	// Links are alice's alone: her neighbours have none.
	for _, k := range []consent.Key{bob, carol, dave} {
		diffRecord(t, consent.Record{}, f.get(k))
	}
	e := erase(alice, "l8", t3)
	etok := f.apply(e)
	diffRecord(t, consent.Record{Token: etok, ErasedAt: t3}, f.get(alice))
	diffEvents(t, []consent.Event{applied(e, etok)}, f.events(alice))
	f.verifyIntact("after the erasure")
}

// testRectify: a rectification as the server writes it: on the new
// identifier, one batch of the carried grants and withdrawals and then
// EventRectifyFrom, applied as one partition's share in one step (its
// events take consecutive sequence numbers of one partition); on the old
// one, EventRectifyTo, which withdraws every purpose, links the new and
// remembers that it moved there (MovedTo).
func testRectify(t *testing.T, open func(t *testing.T) Store) {
	f := newFixture(t, open)
	g := grant(alice, "r0", t0, "email", "sms")
	p := g.Event.Proof
	f.apply(g)
	f.apply(withdraw(alice, "r1", t1, "sms"))

	carried := []consent.Write{
		grant(bob, "r2", t0, "email", "sms"),
		withdraw(bob, "r3", t1, "sms"),
		relate(bob, consent.EventRectifyFrom, alice, consent.IDEmail, "r4", t2),
	}
	toks, errs, err := f.s.ApplyBatch(context.Background(), carried)
	if err != nil {
		t.Fatalf("ApplyBatch: %v", err)
	}
	for i := range carried {
		if errs[i] != nil {
			t.Fatalf("write %d of the rectification: %v", i, errs[i])
		}
		if toks[i].Partition != toks[0].Partition || toks[i].Seq != toks[0].Seq+uint64(i) {
			t.Errorf("write %d of the rectification: token %+v, want partition %d seq %d (one share, in order)", i, toks[i], toks[0].Partition, toks[0].Seq+uint64(i))
		}
	}
	to := relate(alice, consent.EventRectifyTo, bob, consent.IDEmail, "r5", t2)
	ttok := f.apply(to)

	diffRecord(t, consent.Record{Token: toks[2], Links: []consent.Link{{Key: alice, Kind: consent.IDEmail}},
		Purposes: map[string]consent.PurposeRecord{"email": {Grant: &p}, "sms": {Grant: &p, WithdrawnAt: t1}}}, f.get(bob))
	diffRecord(t, consent.Record{Token: ttok, WithdrawnAllAt: t2, Links: []consent.Link{{Key: bob, Kind: consent.IDEmail}}, MovedTo: bob,
		Purposes: map[string]consent.PurposeRecord{"email": {Grant: &p}, "sms": {Grant: &p, WithdrawnAt: t1}}}, f.get(alice))
	var want []consent.Event
	for i, w := range carried {
		want = append(want, applied(w, toks[i]))
	}
	diffEvents(t, want, f.events(bob))
	if evs := f.events(alice); len(evs) != 3 {
		t.Errorf("alice has %d events, want 3", len(evs))
	} else {
		diffEvents(t, []consent.Event{applied(to, ttok)}, evs[2:])
	}
	f.verifyIntact("after a rectification")
}

// testRefusedLinks: a relating write that names the contact itself (alice
// is full, bob has room), one beyond consent.MaxLinks, one with no kind, and an Other on an event that
// relates nothing are refused for "other" and change nothing, not even
// the sequence.
func testRefusedLinks(t *testing.T, open func(t *testing.T) Store) {
	f := newFixture(t, open)
	f.apply(grant(alice, "setup", t0, "email"))
	var full []consent.Write
	for i := range consent.MaxLinks {
		full = append(full, relate(alice, consent.EventLink, key(0x10+byte(i)), consent.IDExternal, fmt.Sprintf("link-%d", i), t1))
	}
	toks, errs, err := f.s.ApplyBatch(context.Background(), full)
	if err != nil {
		t.Fatal(err)
	}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("link %d of %d: %v", i+1, consent.MaxLinks, err)
		}
	}
	last := toks[len(toks)-1]
	if n := len(f.get(alice).Links); n != consent.MaxLinks {
		t.Fatalf("alice has %d links, want %d", n, consent.MaxLinks)
	}
	f.chg.take()
	otherOnGrant := grant(alice, "x6", t2, "sms")
	otherOnGrant.Event.Other = consent.Link{Key: bob, Kind: consent.IDPhone}
	tests := []struct {
		name string
		w    consent.Write
	}{
		{"one link too many", relate(alice, consent.EventLink, bob, consent.IDPhone, "x1", t2)},
		// Bob has room for links: only naming himself is wrong.
		{"link to itself", relate(bob, consent.EventLink, bob, consent.IDEmail, "x2", t2)},
		{"unlink itself", relate(alice, consent.EventUnlink, alice, consent.IDEmail, "x3", t2)},
		{"rectified from itself", relate(bob, consent.EventRectifyFrom, bob, consent.IDEmail, "x4", t2)},
		{"rectified to itself", relate(bob, consent.EventRectifyTo, bob, consent.IDEmail, "x5", t2)},
		{"other on a grant", otherOnGrant},
		{"link without a kind", relate(bob, consent.EventLink, alice, consent.IDUnknown, "x7", t2)},
	}
	before := f.snapshot(alice, bob)
	for _, tt := range tests {
		for _, batch := range []bool{false, true} {
			err := f.applyErr(tt.w, batch)
			var fe *consent.FieldError
			if !errors.Is(err, consent.ErrInvalid) || !errors.As(err, &fe) || fe.Field != "other" {
				t.Errorf("%s (batch %v): %v; want a consent.FieldError for other", tt.name, batch, err)
			}
			f.unchanged(before, alice, bob)
		}
	}
	if next := f.apply(grant(alice, "x1", t2, "sms")); next.Partition != last.Partition || next.Seq != last.Seq+1 {
		t.Errorf("next write token %+v, want partition %d seq %d: a refused write took a sequence number", next, last.Partition, last.Seq+1)
	}
	f.verifyIntact("after refused links")
}

// Tamperer edits what a store holds, as someone with write access to its
// storage (not to its chain key) would. The store under test must
// implement it, for testTamperedLinks.
type Tamperer interface {
	// EditEntry replaces the stored history entry of key's event tok by
	// what edit returns.
	EditEntry(t *testing.T, key consent.Key, tok consent.ConsistencyToken, edit func(entry []byte) []byte)
	// EditRecord replaces key's stored record by what edit returns.
	EditRecord(t *testing.T, key consent.Key, edit func(consent.Record) consent.Record)
}

// testTamperedLinks: the link is covered by the history's chain, and the
// record's links by the history: another identifier put into a stored link
// event, or a link dropped from a record, is a break.
func testTamperedLinks(t *testing.T, open func(t *testing.T) Store) {
	tests := []struct {
		name   string
		tamper func(t *testing.T, tm Tamperer, linkTok consent.ConsistencyToken)
	}{
		{"other identifier in the link event", func(t *testing.T, tm Tamperer, linkTok consent.ConsistencyToken) {
			tm.EditEntry(t, alice, linkTok, func(entry []byte) []byte {
				// The entry holds the linked key as it is (and no more
				// than the key): point it at carol instead of bob.
				i := bytes.LastIndex(entry, bob[:])
				if i < 0 {
					t.Fatalf("the stored link event does not hold the linked key: %x", entry)
				}
				out := bytes.Clone(entry)
				copy(out[i:], carol[:])
				return out
			})
		}},
		{"link dropped from the record", func(t *testing.T, tm Tamperer, _ consent.ConsistencyToken) {
			tm.EditRecord(t, alice, func(r consent.Record) consent.Record {
				if len(r.Links) != 2 {
					t.Fatalf("the record has links %v, want 2", r.Links)
				}
				r.Links = r.Links[1:]
				return r
			})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, open)
			tm, ok := f.s.(Tamperer)
			if !ok {
				t.Fatalf("the store under test (%T) does not implement storetest.Tamperer", f.s)
			}
			f.apply(grant(alice, "t1", t0, "email"))
			linkTok := f.apply(relate(alice, consent.EventLink, bob, consent.IDPhone, "t2", t1))
			f.apply(relate(alice, consent.EventLink, dave, consent.IDExternal, "t3", t1))
			f.verifyIntact("before tampering")
			tt.tamper(t, tm, linkTok)
			parts, err := f.s.VerifyHistory(context.Background())
			if err != nil {
				t.Fatalf("VerifyHistory: %v", err)
			}
			if consent.Intact(parts) {
				t.Errorf("VerifyHistory after tampering: intact, want a break")
			}
			for _, p := range parts {
				for _, b := range p.Breaks {
					t.Logf("break at seq %d: %s", b.Seq, b.Problem)
				}
			}
		})
	}
}
