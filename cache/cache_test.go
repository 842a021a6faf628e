package cache

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/consentd/consentd/consent"
	"github.com/consentd/consentd/internal/contactkey"
	"github.com/consentd/consentd/store"
	"github.com/consentd/consentd/store/storetest"
)

const (
	email = "email_marketing"
	sales = "sales_outreach"
)

// t0 is when the people in these tests act; decisions are asked an hour
// later, well inside every purpose's re-confirmation window.
var (
	t0  = time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)
	now = t0.Add(time.Hour)
)

var keyer = func() *contactkey.Keyer {
	k, err := contactkey.New([]byte("cache-test-secret-0123456789abcdef"))
	if err != nil {
		panic(err)
	}
	return k
}()

// key returns the keyed hash of contact, as the server would compute it.
func key(tb testing.TB, contact string) consent.Key {
	tb.Helper()
	k, err := keyer.Key(contact)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// countingBackend wraps the real store: it counts reads and, when hold is
// set, calls it after the read and before returning the record, so a test
// can park a read whose result is already decided. GetMany calls are counted
// apart (batches, and the keys they asked for), with their own hook.
type countingBackend struct {
	Backend
	reads     atomic.Int64
	batches   atomic.Int64
	batchKeys atomic.Int64
	hold      func(read int64)                      // set before the cache is used
	holdMany  func(batch int64, keys []consent.Key) // likewise, for GetMany
}

func (b *countingBackend) Get(ctx context.Context, key consent.Key) (consent.Record, error) {
	n := b.reads.Add(1)
	rec, err := b.Backend.Get(ctx, key)
	if b.hold != nil {
		b.hold(n)
	}
	return rec, err
}

func (b *countingBackend) GetMany(ctx context.Context, keys []consent.Key, out []consent.Record) error {
	n := b.batches.Add(1)
	b.batchKeys.Add(int64(len(keys)))
	err := b.Backend.GetMany(ctx, keys, out)
	if b.holdMany != nil {
		b.holdMany(n, keys)
	}
	return err
}

type fixture struct {
	st *store.Embedded
	be *countingBackend
	c  *Cache
}

// newFixture opens an embedded store in a temporary directory and puts a
// cache in front of it, wired as cmd/consentd wires them.
func newFixture(tb testing.TB, cfg Config) *fixture {
	tb.Helper()
	st, err := store.OpenEmbedded(tb.TempDir(), storetest.ChainKey())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := st.Close(); err != nil {
			tb.Error(err)
		}
	})
	be := &countingBackend{Backend: st}
	c, err := New(be, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.Close)
	st.OnChange(c.Invalidate)
	return &fixture{st: st, be: be, c: c}
}

var requests atomic.Uint64

func write(k consent.Key, kind consent.EventKind, at time.Time, purposes ...string) consent.Write {
	id := fmt.Sprintf("req-%d", requests.Add(1))
	return consent.Write{
		Key: k,
		Event: consent.Event{
			Kind:     kind,
			Purposes: purposes,
			Proof: consent.Proof{
				Method:        consent.MethodCheckbox,
				Source:        consent.SourceFirstParty,
				EvidenceRef:   "form-signup",
				NoticeVersion: "2025-01",
				CapturedAt:    at,
				Actor:         "web",
			},
			RequestID: id,
		},
		Fingerprint: sha256.Sum256([]byte(id)),
	}
}

func grant(k consent.Key, at time.Time, purposes ...string) consent.Write {
	return write(k, consent.EventGrant, at, purposes...)
}

func withdraw(k consent.Key, at time.Time, purposes ...string) consent.Write {
	return write(k, consent.EventWithdraw, at, purposes...)
}

func (f *fixture) apply(tb testing.TB, w consent.Write) consent.ConsistencyToken {
	tb.Helper()
	tok, err := f.st.Apply(context.Background(), w)
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

// stored reads the store directly, bypassing cache and counter.
func (f *fixture) stored(tb testing.TB, k consent.Key) consent.Record {
	tb.Helper()
	rec, err := f.st.Get(context.Background(), k)
	if err != nil {
		tb.Fatal(err)
	}
	return rec
}

var latest = consent.Consistency{Mode: consent.MinimizeLatency}

func (f *fixture) get(tb testing.TB, k consent.Key, cons consent.Consistency) *consent.Record {
	tb.Helper()
	rec, err := f.c.Get(context.Background(), k, cons)
	if err != nil {
		tb.Fatal(err)
	}
	return rec
}

// counts is what the tests observe of the cache's work.
type counts struct {
	Reads                       int64
	Batches, BatchKeys          int64 // backend GetMany calls, and the keys they read
	Hits, Misses, RejectedFills uint64
}

func (f *fixture) counts() counts {
	s := f.c.Stats()
	return counts{
		Reads:         f.be.reads.Load(),
		Batches:       f.be.batches.Load(),
		BatchKeys:     f.be.batchKeys.Load(),
		Hits:          s.Hits.Load(),
		Misses:        s.Misses.Load(),
		RejectedFills: s.RejectedFills.Load(),
	}
}

func (f *fixture) checkCounts(tb testing.TB, step string, want counts) {
	tb.Helper()
	if diff := cmp.Diff(want, f.counts()); diff != "" {
		tb.Errorf("%s: counts (-want +got):\n%s", step, diff)
	}
}

// checkRecord compares a record the cache returned with the store's.
func (f *fixture) checkRecord(tb testing.TB, step string, k consent.Key, got *consent.Record) {
	tb.Helper()
	if got == nil {
		tb.Fatalf("%s: Get returned a nil record", step)
	}
	if diff := cmp.Diff(f.stored(tb, k), *got); diff != "" {
		tb.Errorf("%s: record (-store +cache):\n%s", step, diff)
	}
}

func decide(rec *consent.Record, purpose string) consent.Decision {
	return consent.Decide(rec, &consent.Purpose{Name: purpose, ReconfirmMonths: 24}, now)
}

// followers counts goroutines parked in singleflight waiting for a flight
// another goroutine leads.
func followers() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "singleflight.(*Group).Do(") && strings.Contains(g, "sync.(*WaitGroup).Wait(") {
			count++
		}
	}
	return count
}

// waitFollowers polls until n goroutines are parked behind a flight.
func waitFollowers(tb testing.TB, n int) {
	tb.Helper()
	for i := 0; followers() < n; i++ {
		if i == 10000 {
			tb.Fatalf("only %d of %d callers joined the flight", followers(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestHitAndMiss(t *testing.T) {
	f := newFixture(t, Config{MaxBytes: 1 << 20, Partitions: 1})
	k := key(t, "ada@example.com")
	f.apply(t, grant(k, t0, email))

	rec := f.get(t, k, latest)
	f.checkRecord(t, "first get", k, rec)
	f.checkCounts(t, "first get", counts{Reads: 1, Misses: 1})

	f.c.rc.Wait() // ristretto applies the fill's Set asynchronously
	for i := range 3 {
		rec := f.get(t, k, latest)
		f.checkRecord(t, "warm get", k, rec)
		f.checkCounts(t, "warm get", counts{Reads: 1, Hits: uint64(i + 1), Misses: 1})
	}
	if got, want := decide(rec, email), (consent.Decision{Allowed: true, Reason: consent.ReasonGranted}); got != want {
		t.Errorf("Decide = %+v, want %+v", got, want)
	}

	other := key(t, "grace@example.com")
	f.get(t, other, latest)
	f.checkCounts(t, "another contact", counts{Reads: 2, Hits: 3, Misses: 2})
}

func TestInvalidateOnWrite(t *testing.T) {
	later := t0.Add(time.Minute)
	tests := []struct {
		name  string
		write func(consent.Key) consent.Write
		want  consent.Decision
	}{
		{"withdraw the purpose", func(k consent.Key) consent.Write { return withdraw(k, later, email) }, consent.Decision{Reason: consent.ReasonWithdrawn}},
		{"withdraw every purpose", func(k consent.Key) consent.Write { return withdraw(k, later) }, consent.Decision{Reason: consent.ReasonWithdrawn}},
		{"erase", func(k consent.Key) consent.Write { return write(k, consent.EventErase, later) }, consent.Decision{Reason: consent.ReasonErased}},
		{"withdraw another purpose", func(k consent.Key) consent.Write { return withdraw(k, later, sales) }, consent.Decision{Allowed: true, Reason: consent.ReasonGranted}},
		// A stale withdrawal (captured before the grant) changes the record's
		// token and history but not the answer.
		{"withdrawal dated before the grant", func(k consent.Key) consent.Write { return withdraw(k, t0.Add(-time.Hour), email) }, consent.Decision{Allowed: true, Reason: consent.ReasonGranted}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, Config{MaxBytes: 1 << 20, Partitions: 1})
			k := key(t, "ada@example.com")
			f.apply(t, grant(k, t0, email, sales))
			granted := f.get(t, k, latest)
			f.c.rc.Wait()
			if rec := f.get(t, k, latest); rec != granted {
				t.Fatal("the granted record was not cached")
			}

			tok := f.apply(t, tt.write(k))
			rec := f.get(t, k, latest)
			f.checkRecord(t, "after the write", k, rec)
			if rec.Token != tok {
				t.Errorf("record token = %+v, want the write's %+v", rec.Token, tok)
			}
			if got := decide(rec, email); got != tt.want {
				t.Errorf("Decide = %+v, want %+v", got, tt.want)
			}
			f.checkCounts(t, "after the write", counts{Reads: 2, Hits: 1, Misses: 2})
		})
	}
}

// The fill race: ristretto applies a Set of a new key asynchronously and a
// Del at once, so a miss that read the granted record could land in the
// cache after the withdrawal's invalidation. These tests use the afterRead
// hook to place the withdrawal in that window.
func TestFillRace(t *testing.T) {
	t.Run("invalidated between read and insert", func(t *testing.T) {
		f := newFixture(t, Config{MaxBytes: 1 << 20, Partitions: 1})
		k := key(t, "ada@example.com")
		f.apply(t, grant(k, t0, email))
		granted := f.stored(t, k)

		var once sync.Once
		f.c.afterRead = func(consent.Key) {
			once.Do(func() {
				// Runs inside the flight: t.Fatal would be swallowed.
				if _, err := f.st.Apply(context.Background(), withdraw(k, t0.Add(time.Minute), email)); err != nil {
					t.Errorf("withdraw: %v", err)
				}
			})
		}

		// The first caller began before the withdrawal was acknowledged, so
		// the granted record it read is a correct answer for it.
		rec := f.get(t, k, latest)
		if diff := cmp.Diff(granted, *rec); diff != "" {
			t.Errorf("first get (-want +got):\n%s", diff)
		}
		f.checkCounts(t, "first get", counts{Reads: 1, Misses: 1, RejectedFills: 1})

		f.c.rc.Wait()
		if e, ok := f.c.rc.Get(k.Uint64()); ok {
			t.Errorf("ristretto holds the rejected fill: %+v", e.rec)
		}
		for i := range 5 {
			rec := f.get(t, k, latest)
			f.checkRecord(t, fmt.Sprintf("get %d", i), k, rec)
			if got := decide(rec, email); got.Allowed || got.Reason != consent.ReasonWithdrawn {
				t.Errorf("get %d: Decide = %+v, want a withdrawn deny", i, got)
			}
			f.c.rc.Wait()
		}
		f.checkCounts(t, "later gets", counts{Reads: 2, Hits: 4, Misses: 2, RejectedFills: 1})
	})

	// The fill passes its generation check and calls Set, but ristretto
	// applies that Set only after the withdrawal's Invalidate has bumped the
	// generation and run its Del. The hook cannot reach the gap between the
	// fill's check and its Set, so the test lets the insert land, runs the
	// withdrawal from a goroutine the hook started, and then puts the fill's
	// own entry back into ristretto the way the late Set would. Only the
	// generation check on read keeps that entry from being served.
	t.Run("insert lands after invalidation", func(t *testing.T) {
		f := newFixture(t, Config{MaxBytes: 1 << 20, Partitions: 1})
		k := key(t, "ada@example.com")
		f.apply(t, grant(k, t0, email))
		granted := f.stored(t, k)

		var (
			once    sync.Once
			release = make(chan struct{})
			done    = make(chan struct{})
		)
		f.c.afterRead = func(consent.Key) {
			once.Do(func() {
				go func() {
					defer close(done)
					<-release
					if _, err := f.st.Apply(context.Background(), withdraw(k, t0.Add(time.Minute), email)); err != nil {
						t.Errorf("withdraw: %v", err)
					}
				}()
			})
		}

		rec := f.get(t, k, latest)
		if diff := cmp.Diff(granted, *rec); diff != "" {
			t.Errorf("first get (-want +got):\n%s", diff)
		}
		f.checkCounts(t, "first get", counts{Reads: 1, Misses: 1})
		f.c.rc.Wait()
		stale, ok := f.c.rc.Get(k.Uint64())
		if !ok {
			t.Fatal("the fill did not reach ristretto")
		}

		close(release)
		<-done
		if !f.c.rc.Set(k.Uint64(), stale, cost(&stale.rec)) {
			t.Fatal("ristretto dropped the late Set")
		}
		f.c.rc.Wait()
		if e, ok := f.c.rc.Get(k.Uint64()); !ok || e != stale {
			t.Fatal("ristretto does not hold the stale granted entry")
		}

		for i := range 5 {
			rec := f.get(t, k, latest)
			f.checkRecord(t, fmt.Sprintf("get %d", i), k, rec)
			if got := decide(rec, email); got.Allowed || got.Reason != consent.ReasonWithdrawn {
				t.Errorf("get %d: Decide = %+v, want a withdrawn deny", i, got)
			}
			f.c.rc.Wait()
		}
		f.checkCounts(t, "later gets", counts{Reads: 2, Hits: 4, Misses: 2})
	})
}

func TestSingleflight(t *testing.T) {
	const n = 16
	f := newFixture(t, Config{MaxBytes: 1 << 20, Partitions: 1})
	k := key(t, "ada@example.com")
	f.apply(t, grant(k, t0, email))

	entered, release := make(chan struct{}), make(chan struct{})
	f.be.hold = func(read int64) {
		if read == 1 {
			close(entered)
			<-release
		}
	}

	var wg sync.WaitGroup
	recs := make([]*consent.Record, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { recs[i], errs[i] = f.c.Get(context.Background(), k, latest) })
	}
	<-entered
	waitFollowers(t, n-1)
	close(release)
	wg.Wait()

	for i := range n {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		f.checkRecord(t, fmt.Sprintf("caller %d", i), k, recs[i])
	}
	f.checkCounts(t, "after the flight", counts{Reads: 1, Misses: n})
}

// A caller that starts after an invalidation must not be handed the result
// of a read that started before it.
func TestFlightKeyedByGeneration(t *testing.T) {
	f := newFixture(t, Config{MaxBytes: 1 << 20, Partitions: 1})
	k := key(t, "ada@example.com")
	f.apply(t, grant(k, t0, email))
	granted := f.stored(t, k)

	entered, release := make(chan struct{}), make(chan struct{})
	f.be.hold = func(read int64) {
		if read == 1 {
			close(entered)
			<-release
		}
	}
	var first *consent.Record
	firstDone := make(chan error, 1)
	go func() {
		var err error
		first, err = f.c.Get(context.Background(), k, latest)
		firstDone <- err
	}()
	<-entered // the first read has returned the grant and is parked

	f.apply(t, withdraw(k, t0.Add(time.Minute), email))

	var second *consent.Record
	secondDone := make(chan error, 1)
	go func() {
		var err error
		second, err = f.c.Get(context.Background(), k, latest)
		secondDone <- err
	}()
	// The second caller either finishes on its own read or parks behind the
	// first flight; parking is the bug.
	for finished := false; !finished; {
		select {
		case err := <-secondDone:
			if err != nil {
				t.Fatal(err)
			}
			finished = true
		default:
			if followers() > 0 {
				close(release)
				<-secondDone
				<-firstDone
				t.Fatal("a caller that started after the invalidation joined the earlier flight")
			}
			time.Sleep(time.Millisecond)
		}
	}
	f.checkRecord(t, "second caller", k, second)
	f.checkCounts(t, "second caller", counts{Reads: 2, Misses: 2})

	close(release)
	if err := <-firstDone; err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(granted, *first); diff != "" {
		t.Errorf("first caller (-want +got):\n%s", diff)
	}
	f.checkCounts(t, "first caller", counts{Reads: 2, Misses: 2, RejectedFills: 1})

	f.c.rc.Wait()
	f.checkRecord(t, "later get", k, f.get(t, k, latest))
	f.checkCounts(t, "later get", counts{Reads: 2, Hits: 1, Misses: 2, RejectedFills: 1})
}

func TestConsistency(t *testing.T) {
	f := newFixture(t, Config{MaxBytes: 1 << 20, Partitions: 1})
	k := key(t, "ada@example.com")
	f.apply(t, grant(k, t0, sales))
	tok := f.apply(t, grant(k, t0, email))
	f.get(t, k, latest)
	f.c.rc.Wait()

	tests := []struct {
		name      string
		cons      consent.Consistency
		wantReads int64
	}{
		{"minimize latency", latest, 0},
		{"fully consistent", consent.Consistency{Mode: consent.FullyConsistent}, 1},
		{"fully consistent again", consent.Consistency{Mode: consent.FullyConsistent}, 1},
		{"fully consistent ignores a covered token", consent.Consistency{Mode: consent.FullyConsistent, Token: tok}, 1},
		{"at least as fresh as the last write", consent.Consistency{Mode: consent.AtLeastAsFresh, Token: tok}, 0},
		{"at least as fresh as an older write", consent.Consistency{Mode: consent.AtLeastAsFresh, Token: consent.ConsistencyToken{Seq: tok.Seq - 1}}, 0},
		{"at least as fresh as the zero token", consent.Consistency{Mode: consent.AtLeastAsFresh}, 0},
		{"at least as fresh as a write not seen here", consent.Consistency{Mode: consent.AtLeastAsFresh, Token: consent.ConsistencyToken{Seq: tok.Seq + 1}}, 1},
		{"token of an unknown partition", consent.Consistency{Mode: consent.AtLeastAsFresh, Token: consent.ConsistencyToken{Partition: 1, Seq: 1}}, 1},
		{"token of an unknown partition, seq 0", consent.Consistency{Mode: consent.AtLeastAsFresh, Token: consent.ConsistencyToken{Partition: 7}}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := f.counts()
			rec := f.get(t, k, tt.cons)
			f.checkRecord(t, tt.name, k, rec)
			if got := f.counts().Reads - before.Reads; got != tt.wantReads {
				t.Errorf("backend reads = %d, want %d", got, tt.wantReads)
			}
		})
	}
}

func TestFlush(t *testing.T) {
	f := newFixture(t, Config{MaxBytes: 1 << 20, Partitions: 1})
	var keys []consent.Key
	for _, c := range []string{"ada@example.com", "grace@example.com", "+442079460000"} {
		k := key(t, c)
		keys = append(keys, k)
		f.apply(t, grant(k, t0, email))
		f.get(t, k, latest)
	}
	f.c.rc.Wait()
	for _, k := range keys {
		f.get(t, k, latest)
	}
	f.checkCounts(t, "warm", counts{Reads: 3, Hits: 3, Misses: 3})

	f.c.Flush()
	if got := f.c.Stats().Flushes.Load(); got != 1 {
		t.Errorf("Flushes = %d, want 1", got)
	}
	for _, k := range keys {
		f.checkRecord(t, "after flush", k, f.get(t, k, latest))
	}
	f.checkCounts(t, "after flush", counts{Reads: 6, Hits: 3, Misses: 6})

	f.c.rc.Wait()
	for _, k := range keys {
		f.get(t, k, latest)
	}
	f.checkCounts(t, "refilled", counts{Reads: 6, Hits: 6, Misses: 6})
}

func TestDisabled(t *testing.T) {
	for _, maxBytes := range []int64{0, -1} {
		t.Run(fmt.Sprint(maxBytes), func(t *testing.T) {
			f := newFixture(t, Config{MaxBytes: maxBytes})
			if f.c.rc != nil {
				t.Fatal("a disabled cache has a ristretto cache")
			}
			f.c.afterRead = func(consent.Key) { t.Error("a disabled cache filled") }
			k := key(t, "ada@example.com")
			f.checkRecord(t, "unknown contact", k, f.get(t, k, latest))
			f.apply(t, grant(k, t0, email))
			for _, cons := range []consent.Consistency{latest, latest, {Mode: consent.AtLeastAsFresh}, {Mode: consent.FullyConsistent}} {
				f.checkRecord(t, "granted", k, f.get(t, k, cons))
			}
			f.c.Flush()
			f.c.Invalidate(k, consent.ConsistencyToken{Partition: 9, Seq: 1})
			f.apply(t, withdraw(k, t0.Add(time.Minute)))
			rec := f.get(t, k, latest)
			f.checkRecord(t, "withdrawn", k, rec)
			if got := decide(rec, email); got.Allowed {
				t.Errorf("Decide = %+v after withdrawal", got)
			}
			if got, want := f.be.reads.Load(), int64(6); got != want {
				t.Errorf("backend reads = %d, want %d (every get)", got, want)
			}
			if got := f.c.Stats().Hits.Load(); got != 0 {
				t.Errorf("Hits = %d, want 0", got)
			}
		})
	}
}

// An unknown contact's zero record is cached like any other, until a write
// for it invalidates it.
func TestNegativeCaching(t *testing.T) {
	f := newFixture(t, Config{MaxBytes: 1 << 20, Partitions: 1})
	k := key(t, "nobody@example.com")
	for i := range 3 {
		rec := f.get(t, k, latest)
		if diff := cmp.Diff(consent.Record{}, *rec); diff != "" {
			t.Errorf("get %d (-want +got):\n%s", i, diff)
		}
		if got, want := decide(rec, email), (consent.Decision{Reason: consent.ReasonNoConsent}); got != want {
			t.Errorf("get %d: Decide = %+v, want %+v", i, got, want)
		}
		f.c.rc.Wait()
	}
	f.checkCounts(t, "unknown contact", counts{Reads: 1, Hits: 2, Misses: 1})

	f.apply(t, grant(k, t0, email))
	rec := f.get(t, k, latest)
	f.checkRecord(t, "after a grant", k, rec)
	if got := decide(rec, email); !got.Allowed {
		t.Errorf("Decide = %+v after a grant", got)
	}
	f.checkCounts(t, "after a grant", counts{Reads: 2, Hits: 2, Misses: 2})
}

// Readers and writers race on a few contacts. Every writer checks that it
// reads its own write through the cache at once; at the end the cache agrees
// with the store for every contact.
func TestConcurrentReadersAndWriters(t *testing.T) {
	const (
		contacts    = 4
		writers     = 4
		writes      = 25 // per writer
		readers     = 8
		readsPerRdr = 2000
	)
	f := newFixture(t, Config{MaxBytes: 1 << 20, Partitions: 1})
	keys := make([]consent.Key, contacts)
	for i := range keys {
		keys[i] = key(t, fmt.Sprintf("contact%d@example.com", i))
	}
	ctx := context.Background()

	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range writes {
				k := keys[(w+i)%contacts]
				// Capture times increase per writer and interleave across
				// writers, so the winning event is not always the last to
				// arrive.
				at := t0.Add(time.Duration(i*writers+w) * time.Second)
				wr := grant(k, at, email)
				if i%2 == 1 {
					wr = withdraw(k, at, email)
				}
				tok, err := f.st.Apply(ctx, wr)
				if err != nil {
					t.Error(err)
					return
				}
				for _, cons := range []consent.Consistency{latest, {Mode: consent.AtLeastAsFresh, Token: tok}} {
					rec, err := f.c.Get(ctx, k, cons)
					if err != nil {
						t.Error(err)
						return
					}
					if rec.Token.Seq < tok.Seq {
						t.Errorf("writer %d read token %d after its write %d (mode %d)", w, rec.Token.Seq, tok.Seq, cons.Mode)
					}
				}
			}
		})
	}
	for r := range readers {
		wg.Go(func() {
			for i := range readsPerRdr {
				k := keys[(r+i)%contacts]
				cons := latest
				if i%7 == 0 {
					cons = consent.Consistency{Mode: consent.FullyConsistent}
				}
				rec, err := f.c.Get(ctx, k, cons)
				if err != nil {
					t.Error(err)
					return
				}
				_ = decide(rec, email)
				if r == 0 && i%500 == 499 {
					f.c.Flush()
				}
			}
		})
	}
	wg.Wait()

	check := func(step string) {
		for i, k := range keys {
			f.checkRecord(t, fmt.Sprintf("%s: contact %d", step, i), k, f.get(t, k, latest))
		}
	}
	check("after the writers")
	f.c.rc.Wait()
	check("after ristretto settled")
}

// A flight reads on its leader's context. When that caller gives up, the
// callers that joined it still want the record.
func TestLeaderCancelledFollowersStillAnswered(t *testing.T) {
	const n = 4
	f := newFixture(t, Config{MaxBytes: 1 << 20, Partitions: 1})
	k := key(t, "ada@example.com")
	f.apply(t, grant(k, t0, email))

	entered, release := make(chan struct{}), make(chan struct{})
	f.be.hold = func(read int64) {
		if read == 1 {
			close(entered)
			<-release
		}
	}
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	leaderDone := make(chan error, 1)
	go func() {
		_, err := f.c.Get(gone, k, latest)
		leaderDone <- err
	}()
	<-entered // the leader's read has failed with its context's error

	var wg sync.WaitGroup
	recs := make([]*consent.Record, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { recs[i], errs[i] = f.c.Get(context.Background(), k, latest) })
	}
	waitFollowers(t, n)
	close(release)
	wg.Wait()

	if err := <-leaderDone; !errors.Is(err, context.Canceled) {
		t.Errorf("leader: err = %v, want context.Canceled", err)
	}
	for i := range n {
		if errs[i] != nil {
			t.Errorf("follower %d: %v", i, errs[i])
			continue
		}
		f.checkRecord(t, fmt.Sprintf("follower %d", i), k, recs[i])
	}
	// The shared read failed, so each follower read for itself.
	f.checkCounts(t, "after the flight", counts{Reads: 1 + n, Misses: 1 + n})
}

// TestFenceLeaseAndLost: with a lease, a partition's records are used only
// while its fence is young; Lost withdraws trust at once; FenceAge reports
// the lag and says when there is no fence.
func TestFenceLeaseAndLost(t *testing.T) {
	clock := t0
	f := newFixture(t, Config{MaxBytes: 1 << 20, Partitions: 1, Lease: time.Second, Now: func() time.Time { return clock }})
	k := key(t, "fenced@example.com")
	f.apply(t, grant(k, t0, email))
	if _, ok := f.c.FenceAge(0); ok {
		t.Fatal("FenceAge before any fence: ok, want no fence")
	}
	reads := func() int64 { return f.be.reads.Load() }
	f.get(t, k, latest) // no fence yet: read through
	f.get(t, k, latest)
	if got := reads(); got != 2 {
		t.Fatalf("without a fence: %d backend reads for 2 gets, want 2", got)
	}
	f.c.Fence(0, 1, clock)
	f.get(t, k, latest) // fill
	f.c.rc.Wait()
	before := reads()
	f.get(t, k, latest)
	if reads() != before {
		t.Error("within the lease: read the backend, want a cache hit")
	}
	clock = clock.Add(1500 * time.Millisecond)
	if age, ok := f.c.FenceAge(0); !ok || age != 1500*time.Millisecond {
		t.Errorf("FenceAge = %v, %v; want 1.5s", age, ok)
	}
	f.get(t, k, latest)
	if reads() != before+1 {
		t.Error("after the lease: served from the cache, want a backend read")
	}
	f.c.Fence(0, 1, clock)
	f.c.Lost(0)
	if _, ok := f.c.FenceAge(0); ok {
		t.Error("FenceAge after Lost: ok, want no fence")
	}
	before = reads()
	f.get(t, k, latest)
	if reads() != before+1 {
		t.Error("after Lost: served from the cache, want a backend read")
	}
}

// A cache too small for what it is asked keeps a few records and evicts
// others to make room. Each eviction is counted once, as ristretto counts it;
// an invalidation (a Del) is not an eviction, though ristretto counts it as
// one.
func TestEvictions(t *testing.T) {
	const room = 8 // records of an unknown contact the cache has room for
	f := newFixture(t, Config{MaxBytes: room * cost(&consent.Record{}), Partitions: 1, ristrettoMetrics: true})
	var keys []consent.Key
	for i := range 20 * room {
		k := key(t, fmt.Sprintf("evict-%d@example.com", i))
		keys = append(keys, k)
		f.get(t, k, latest)
		f.c.rc.Wait() // ristretto applies the fill, and evicts for it, asynchronously
	}
	evicted := f.c.Stats().Evictions.Load()
	if evicted == 0 {
		t.Fatalf("no evictions after filling a cache with room for %d records with %d", room, len(keys))
	}
	if got, want := evicted, f.c.rc.Metrics.KeysEvicted(); got != want {
		t.Errorf("Stats().Evictions = %d, ristretto's KeysEvicted = %d", got, want)
	}

	var cached consent.Key
	for _, k := range keys {
		if _, ok := f.c.rc.Get(k.Uint64()); ok {
			cached = k
			break
		}
	}
	if cached == (consent.Key{}) {
		t.Fatal("no record left in the cache")
	}
	f.c.Drop(cached)
	f.c.rc.Wait()
	if got := f.c.Stats().Evictions.Load(); got != evicted {
		t.Errorf("after a Drop: Stats().Evictions = %d, want %d as before", got, evicted)
	}
	if got, want := f.c.rc.Metrics.KeysEvicted(), evicted+1; got != want {
		t.Errorf("after a Drop: ristretto's KeysEvicted = %d, want %d (it counts the Del)", got, want)
	}
}

// TestCostCountsLinks: a record's links are part of what the cache holds
// for it, so a cache of linked records stays within its bytes.
func TestCostCountsLinks(t *testing.T) {
	links := make([]consent.Link, consent.MaxLinks)
	for i := range links {
		links[i] = consent.Link{Key: consent.Key{byte(i)}, Kind: consent.IDEmail}
	}
	bare, linked := cost(&consent.Record{}), cost(&consent.Record{Links: links})
	if got, want := linked-bare, int64(consent.MaxLinks*(len(consent.Key{})+1)); got < want {
		t.Errorf("%d links add %d to a record's cost, want at least %d", consent.MaxLinks, got, want)
	}
}
