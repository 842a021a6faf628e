package cache

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/consentd/consentd/consent"
)

// sentinel fills GetMany's output before the call: every slot must be
// overwritten.
var sentinel = &consent.Record{Token: consent.ConsistencyToken{Partition: 99, Seq: 99}}

func (f *fixture) getMany(tb testing.TB, keys []consent.Key, cons consent.Consistency) []*consent.Record {
	tb.Helper()
	out := make([]*consent.Record, len(keys))
	for i := range out {
		out[i] = sentinel
	}
	if err := f.c.GetMany(context.Background(), keys, cons, out); err != nil {
		tb.Fatalf("GetMany: %v", err)
	}
	for i, r := range out {
		if r == nil || r == sentinel {
			tb.Fatalf("GetMany left out[%d] unset (%v)", i, r)
		}
	}
	return out
}

// checkRecords compares every record GetMany returned with the store's.
func (f *fixture) checkRecords(tb testing.TB, step string, keys []consent.Key, got []*consent.Record) {
	tb.Helper()
	for i, k := range keys {
		f.checkRecord(tb, fmt.Sprintf("%s: out[%d]", step, i), k, got[i])
	}
}

// delta returns the counts gained since before.
func (f *fixture) delta(before counts) counts {
	now := f.counts()
	return counts{
		Reads:         now.Reads - before.Reads,
		Batches:       now.Batches - before.Batches,
		BatchKeys:     now.BatchKeys - before.BatchKeys,
		Hits:          now.Hits - before.Hits,
		Misses:        now.Misses - before.Misses,
		RejectedFills: now.RejectedFills - before.RejectedFills,
	}
}

func (f *fixture) checkDelta(tb testing.TB, step string, before, want counts) {
	tb.Helper()
	if diff := cmp.Diff(want, f.delta(before)); diff != "" {
		tb.Errorf("%s: counts gained (-want +got):\n%s", step, diff)
	}
}

// cachedIn reports whether ristretto holds an entry for k (whatever its
// generation). Call rc.Wait first.
func (f *fixture) cachedIn(k consent.Key) bool {
	_, ok := f.c.rc.Get(k.Uint64())
	return ok
}

// contacts returns n keys of contacts named after prefix.
func contacts(tb testing.TB, prefix string, n int) []consent.Key {
	tb.Helper()
	keys := make([]consent.Key, n)
	for i := range keys {
		keys[i] = key(tb, fmt.Sprintf("%s-%d@example.com", prefix, i))
	}
	return keys
}

// inPartitions returns n keys of partition p and n keys of other partitions,
// of parts.
func inPartitions(tb testing.TB, parts, p uint32, n int) (in, out []consent.Key) {
	tb.Helper()
	for i := 0; len(in) < n || len(out) < n; i++ {
		if i == 10000 {
			tb.Fatalf("no %d keys in and out of partition %d of %d", n, p, parts)
		}
		k := key(tb, fmt.Sprintf("partitioned-%d@example.com", i))
		switch {
		case k.Partition(parts) == p && len(in) < n:
			in = append(in, k)
		case k.Partition(parts) != p && len(out) < n:
			out = append(out, k)
		}
	}
	return in, out
}

// people is a granted, a withdrawn, an erased and an unknown contact.
type people struct {
	granted, withdrawn, erased, unknown consent.Key
	last                                consent.ConsistencyToken
}

func (f *fixture) people(tb testing.TB) people {
	tb.Helper()
	ks := contacts(tb, "people", 4)
	p := people{granted: ks[0], withdrawn: ks[1], erased: ks[2], unknown: ks[3]}
	f.apply(tb, grant(p.granted, t0, email, sales))
	f.apply(tb, grant(p.withdrawn, t0, email, sales))
	f.apply(tb, withdraw(p.withdrawn, t0.Add(time.Minute), email))
	f.apply(tb, grant(p.erased, t0, email))
	p.last = f.apply(tb, write(p.erased, consent.EventErase, t0.Add(time.Minute)))
	return p
}

// TestGetManyMatchesGet: under every consistency mode GetMany answers each
// key as Get does, from the cache exactly when Get would use it. One cached
// entry is doctored (a record the store does not hold, under the current
// generation) so that whether an answer came from the cache shows in the
// record itself, not only in the counters.
func TestGetManyMatchesGet(t *testing.T) {
	tests := []struct {
		name   string
		cons   func(last consent.ConsistencyToken) consent.Consistency
		cached bool // whether the cache may answer
	}{
		{"minimize latency", func(consent.ConsistencyToken) consent.Consistency { return latest }, true},
		{"at least as fresh as the last write", func(last consent.ConsistencyToken) consent.Consistency {
			return consent.Consistency{Mode: consent.AtLeastAsFresh, Token: last}
		}, true},
		{"at least as fresh as the zero token", func(consent.ConsistencyToken) consent.Consistency {
			return consent.Consistency{Mode: consent.AtLeastAsFresh}
		}, true},
		{"at least as fresh as a write not seen here", func(last consent.ConsistencyToken) consent.Consistency {
			return consent.Consistency{Mode: consent.AtLeastAsFresh, Token: consent.ConsistencyToken{Partition: last.Partition, Seq: last.Seq + 1}}
		}, false},
		{"at least as fresh, token of another partition", func(consent.ConsistencyToken) consent.Consistency {
			return consent.Consistency{Mode: consent.AtLeastAsFresh, Token: consent.ConsistencyToken{Partition: 1, Seq: 1}}
		}, false},
		{"fully consistent", func(consent.ConsistencyToken) consent.Consistency {
			return consent.Consistency{Mode: consent.FullyConsistent}
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, Config{MaxBytes: 1 << 20, Partitions: 1})
			p := f.people(t)
			cons := tt.cons(p.last)

			// Warm the granted and the unknown contact through Get, then
			// doctor the granted one's entry.
			f.get(t, p.granted, latest)
			f.get(t, p.unknown, latest)
			f.c.rc.Wait()
			orig := f.c.lookup(p.granted, f.c.gens[stripe(p.granted)].Load(), f.c.epoch.Load())
			if orig == nil {
				t.Fatal("the granted contact was not cached")
			}
			doctored := *orig
			doctored.rec.Token.Seq += 1000
			if !f.c.rc.Set(p.granted.Uint64(), &doctored, cost(&doctored.rec)) {
				t.Fatal("ristretto dropped the doctored entry")
			}
			f.c.rc.Wait()
			if got := f.get(t, p.granted, latest); got != &doctored.rec {
				t.Fatal("the doctored entry is not served")
			}
			if !tt.cached {
				f.c.afterRead = func(k consent.Key) { t.Errorf("filled %v in a mode that bypasses the cache", k) }
			}

			keys := []consent.Key{p.granted, p.withdrawn, p.unknown, p.erased, p.granted, p.withdrawn}
			before := f.counts()
			got := f.getMany(t, keys, cons)
			want := counts{Batches: 1, BatchKeys: 6} // everything read
			if tt.cached {
				// granted (twice) and unknown hit; withdrawn (twice) and erased miss.
				want = counts{Batches: 1, BatchKeys: 3, Hits: 3, Misses: 3}
			}
			f.checkDelta(t, "GetMany", before, want)

			for i, k := range keys {
				if k == p.granted && tt.cached {
					if got[i] != &doctored.rec {
						t.Errorf("out[%d]: the granted contact was not served from the cache: %+v", i, got[i])
					}
					continue
				}
				f.checkRecord(t, fmt.Sprintf("out[%d]", i), k, got[i])
			}

			// The same answers as Get's, key by key.
			for i, k := range keys {
				if diff := cmp.Diff(*f.get(t, k, cons), *got[i]); diff != "" {
					t.Errorf("out[%d] differs from Get (-Get +GetMany):\n%s", i, diff)
				}
			}

			f.c.rc.Wait()
			if tt.cached != f.cachedIn(p.withdrawn) {
				t.Errorf("withdrawn contact cached = %v, want %v", !tt.cached, tt.cached)
			}
		})
	}
}

// TestGetManyOneBatch: all the misses of a GetMany cost one backend GetMany
// and no Get; once the fills are visible, hits cost nothing; entries are
// shared with Get.
func TestGetManyOneBatch(t *testing.T) {
	f := newFixture(t, Config{MaxBytes: 1 << 20, Partitions: 1})
	keys := contacts(t, "batch", 20)
	for i, k := range keys {
		if i%3 != 0 { // a third are unknown contacts
			f.apply(t, grant(k, t0, email))
		}
	}

	first := f.getMany(t, keys, latest)
	f.checkRecords(t, "cold", keys, first)
	f.checkCounts(t, "cold", counts{Batches: 1, BatchKeys: 20, Misses: 20})

	f.c.rc.Wait() // ristretto applies the fills' Sets asynchronously
	warm := f.getMany(t, keys, latest)
	f.checkCounts(t, "warm", counts{Batches: 1, BatchKeys: 20, Hits: 20, Misses: 20})
	for i := range keys {
		if warm[i] != first[i] {
			t.Errorf("out[%d]: a hit returned another record than the fill's", i)
		}
	}

	// Get uses GetMany's fills.
	if rec := f.get(t, keys[1], latest); rec != first[1] {
		t.Error("Get did not hit GetMany's fill")
	}
	f.checkCounts(t, "get", counts{Batches: 1, BatchKeys: 20, Hits: 21, Misses: 20})

	// Writes to three contacts: only those are read, in one call.
	changed := []int{0, 7, 19}
	for _, i := range changed {
		f.apply(t, withdraw(keys[i], t0.Add(time.Minute), email))
	}
	after := f.getMany(t, keys, latest)
	f.checkRecords(t, "after writes", keys, after)
	f.checkCounts(t, "after writes", counts{Batches: 2, BatchKeys: 23, Hits: 38, Misses: 23})
	for _, i := range changed {
		if got := decide(after[i], email); got.Allowed || (i != 0 && got.Reason != consent.ReasonWithdrawn) {
			t.Errorf("contact %d: Decide = %+v after its withdrawal", i, got)
		}
	}

	// Empty and all-hit batches do not reach the backend.
	f.c.rc.Wait()
	f.getMany(t, nil, latest)
	f.getMany(t, keys[:5], latest)
	f.checkCounts(t, "all hits", counts{Batches: 2, BatchKeys: 23, Hits: 43, Misses: 23})
}

// TestGetManyFillRace is TestFillRace for GetMany's fills: an invalidation
// after a key's snapshot and before its insert must refuse the insert, and
// leave the batch's other fills alone.
func TestGetManyFillRace(t *testing.T) {
	setup := func(t *testing.T) (*fixture, consent.Key, consent.Key, consent.Record) {
		f := newFixture(t, Config{MaxBytes: 1 << 20, Partitions: 1})
		ks := contacts(t, "racer", 2)
		k, other := ks[0], ks[1]
		f.apply(t, grant(k, t0, email))
		f.apply(t, grant(other, t0, email))
		return f, k, other, f.stored(t, k)
	}
	withdrawOnce := func(t *testing.T, f *fixture, k consent.Key) func() {
		var once sync.Once
		return func() {
			once.Do(func() {
				// Runs inside GetMany: t.Fatal would not stop the test.
				if _, err := f.st.Apply(context.Background(), withdraw(k, t0.Add(time.Minute), email)); err != nil {
					t.Errorf("withdraw: %v", err)
				}
			})
		}
	}
	// afterwards checks that k is answered withdrawn from now on, and other
	// from the cache.
	afterwards := func(t *testing.T, f *fixture, k, other consent.Key) {
		t.Helper()
		f.c.rc.Wait()
		if e, ok := f.c.rc.Get(k.Uint64()); ok && f.c.lookup(k, f.c.gens[stripe(k)].Load(), f.c.epoch.Load()) != nil {
			t.Errorf("the cache holds a usable entry for the raced key: %+v", e.rec)
		}
		if !f.cachedIn(other) {
			t.Error("the other key's fill was lost")
		}
		// GetMany first: a Get's fill would replace a stale entry.
		for i := range 3 {
			recs := f.getMany(t, []consent.Key{k, other}, latest)
			f.checkRecords(t, fmt.Sprintf("getMany %d", i), []consent.Key{k, other}, recs)
			if got := decide(recs[0], email); got.Allowed || got.Reason != consent.ReasonWithdrawn {
				t.Errorf("getMany %d: Decide = %+v, want a withdrawn deny", i, got)
			}
			f.c.rc.Wait()
		}
		f.checkRecord(t, "get", k, f.get(t, k, latest))
	}

	t.Run("invalidated between read and insert", func(t *testing.T) {
		f, k, other, granted := setup(t)
		w := withdrawOnce(t, f, k)
		f.c.afterRead = func(got consent.Key) {
			if got == k {
				w()
			}
		}
		// The read began before the withdrawal was acknowledged: the grant
		// is a correct answer for this call.
		recs := f.getMany(t, []consent.Key{other, k}, latest)
		if diff := cmp.Diff(granted, *recs[1]); diff != "" {
			t.Errorf("raced key (-want +got):\n%s", diff)
		}
		f.checkRecord(t, "other key", other, recs[0])
		f.checkCounts(t, "GetMany", counts{Batches: 1, BatchKeys: 2, Misses: 2, RejectedFills: 1})
		f.c.afterRead = nil
		afterwards(t, f, k, other)
	})

	// The write lands while the backend's answer is on its way back, before
	// GetMany looks at it: the snapshot must predate the read, not follow it.
	t.Run("invalidated before the read returns", func(t *testing.T) {
		f, k, other, granted := setup(t)
		w := withdrawOnce(t, f, k)
		f.be.holdMany = func(int64, []consent.Key) { w() }
		recs := f.getMany(t, []consent.Key{k, other}, latest)
		if diff := cmp.Diff(granted, *recs[0]); diff != "" {
			t.Errorf("raced key (-want +got):\n%s", diff)
		}
		f.checkCounts(t, "GetMany", counts{Batches: 1, BatchKeys: 2, Misses: 2, RejectedFills: 1})
		f.be.holdMany = nil
		afterwards(t, f, k, other)
	})

	t.Run("flushed between read and insert", func(t *testing.T) {
		f, k, other, _ := setup(t)
		var once sync.Once
		f.c.afterRead = func(consent.Key) { once.Do(f.c.Flush) }
		keys := []consent.Key{k, other}
		f.checkRecords(t, "GetMany", keys, f.getMany(t, keys, latest))
		f.checkCounts(t, "GetMany", counts{Batches: 1, BatchKeys: 2, Misses: 2, RejectedFills: 2})
		f.c.afterRead = nil
		f.c.rc.Wait()
		f.checkRecords(t, "after", keys, f.getMany(t, keys, latest))
		f.checkCounts(t, "after", counts{Batches: 2, BatchKeys: 4, Misses: 4, RejectedFills: 2})
	})

	// ristretto applies a Set after a Del that was issued later: the stale
	// entry is back in ristretto, and only the generation check keeps
	// GetMany's hit path from serving it.
	t.Run("insert lands after invalidation", func(t *testing.T) {
		f, k, other, _ := setup(t)
		keys := []consent.Key{k, other}
		f.getMany(t, keys, latest)
		f.c.rc.Wait()
		stale, ok := f.c.rc.Get(k.Uint64())
		if !ok {
			t.Fatal("the fill did not reach ristretto")
		}
		f.apply(t, withdraw(k, t0.Add(time.Minute), email))
		if !f.c.rc.Set(k.Uint64(), stale, cost(&stale.rec)) {
			t.Fatal("ristretto dropped the late Set")
		}
		f.c.rc.Wait()
		if e, ok := f.c.rc.Get(k.Uint64()); !ok || e != stale {
			t.Fatal("ristretto does not hold the stale granted entry")
		}
		afterwards(t, f, k, other)
	})
}

// TestGetManyLease: with a lease, a partition's entries are used only while
// its fence is young; each key of a batch is judged by its own partition.
func TestGetManyLease(t *testing.T) {
	const parts = 4
	clock := t0
	f := newFixture(t, Config{MaxBytes: 1 << 20, Partitions: parts, Lease: time.Second, Now: func() time.Time { return clock }})
	fenced, others := inPartitions(t, parts, 2, 3)
	keys := append(append([]consent.Key{}, fenced...), others...)
	for _, k := range keys[1:] {
		f.apply(t, grant(k, t0, email))
	}

	// No fence: everything goes to the backend, nothing is filled.
	f.c.afterRead = func(k consent.Key) { t.Errorf("filled %v with no fence", k) }
	for i := range 2 {
		f.checkRecords(t, "no fence", keys, f.getMany(t, keys, latest))
		f.checkCounts(t, "no fence", counts{Batches: int64(i + 1), BatchKeys: int64(6 * (i + 1))})
	}
	f.c.rc.Wait()
	for _, k := range keys {
		if f.cachedIn(k) {
			t.Errorf("%v cached with no fence", k)
		}
	}
	f.c.afterRead = nil

	// Partition 2 fenced: its keys are cached, the others still read.
	f.c.Fence(2, 0, clock)
	before := f.counts()
	f.checkRecords(t, "fenced", keys, f.getMany(t, keys, latest))
	f.checkDelta(t, "fenced, cold", before, counts{Batches: 1, BatchKeys: 6, Misses: 3})
	f.c.rc.Wait()
	before = f.counts()
	f.checkRecords(t, "fenced", keys, f.getMany(t, keys, latest))
	f.checkDelta(t, "fenced, warm", before, counts{Batches: 1, BatchKeys: 3, Hits: 3})
	before = f.counts()
	f.getMany(t, fenced, latest)
	f.checkDelta(t, "fenced keys only", before, counts{Hits: 3})

	// The lease runs out: back to the backend.
	clock = clock.Add(1500 * time.Millisecond)
	before = f.counts()
	f.checkRecords(t, "lease over", keys, f.getMany(t, keys, latest))
	f.checkDelta(t, "lease over", before, counts{Batches: 1, BatchKeys: 6})

	// A new fence makes the entries usable again; Lost withdraws them.
	f.c.Fence(2, 0, clock)
	before = f.counts()
	f.getMany(t, fenced, latest)
	f.checkDelta(t, "fenced again", before, counts{Hits: 3})
	f.c.Lost(2)
	before = f.counts()
	f.checkRecords(t, "lost", keys, f.getMany(t, keys, latest))
	f.checkDelta(t, "lost", before, counts{Batches: 1, BatchKeys: 6})
}

// TestGetManyTokenPerPartition: a token covers the keys of its partition
// only; the others of the batch are read.
func TestGetManyTokenPerPartition(t *testing.T) {
	const parts = 4
	f := newFixture(t, Config{MaxBytes: 1 << 20, Partitions: parts})
	in, out := inPartitions(t, parts, 1, 3)
	keys := append(append([]consent.Key{}, out...), in...)
	for _, k := range keys {
		f.apply(t, grant(k, t0, email))
	}
	f.getMany(t, keys, latest)
	f.c.rc.Wait()
	f.c.Fence(1, 10, time.Now()) // every write of partition 1 up to 10 seen

	before := f.counts()
	f.checkRecords(t, "covered", keys, f.getMany(t, keys, consent.Consistency{Mode: consent.AtLeastAsFresh, Token: consent.ConsistencyToken{Partition: 1, Seq: 10}}))
	f.checkDelta(t, "covered", before, counts{Batches: 1, BatchKeys: 3, Hits: 3})

	before = f.counts()
	f.checkRecords(t, "not yet seen", keys, f.getMany(t, keys, consent.Consistency{Mode: consent.AtLeastAsFresh, Token: consent.ConsistencyToken{Partition: 1, Seq: 11}}))
	f.checkDelta(t, "not yet seen", before, counts{Batches: 1, BatchKeys: 6})
}

func TestGetManyFlush(t *testing.T) {
	f := newFixture(t, Config{MaxBytes: 1 << 20, Partitions: 1})
	keys := contacts(t, "flush", 5)
	for _, k := range keys[:4] {
		f.apply(t, grant(k, t0, email))
	}
	f.getMany(t, keys, latest)
	f.c.rc.Wait()
	f.getMany(t, keys, latest)
	f.checkCounts(t, "warm", counts{Batches: 1, BatchKeys: 5, Hits: 5, Misses: 5})

	f.c.Flush()
	f.checkRecords(t, "after flush", keys, f.getMany(t, keys, latest))
	f.checkCounts(t, "after flush", counts{Batches: 2, BatchKeys: 10, Hits: 5, Misses: 10})

	f.c.rc.Wait()
	f.checkRecords(t, "refilled", keys, f.getMany(t, keys, latest))
	f.checkCounts(t, "refilled", counts{Batches: 2, BatchKeys: 10, Hits: 10, Misses: 10})
}

func TestGetManyDisabled(t *testing.T) {
	for _, maxBytes := range []int64{0, -1} {
		t.Run(fmt.Sprint(maxBytes), func(t *testing.T) {
			f := newFixture(t, Config{MaxBytes: maxBytes})
			f.c.afterRead = func(consent.Key) { t.Error("a disabled cache filled") }
			keys := contacts(t, "disabled", 3)
			f.checkRecords(t, "unknown contacts", keys, f.getMany(t, keys, latest))
			tok := f.apply(t, grant(keys[0], t0, email))
			modes := []consent.Consistency{latest, latest, {Mode: consent.AtLeastAsFresh, Token: tok}, {Mode: consent.FullyConsistent}}
			for _, cons := range modes {
				f.checkRecords(t, "granted", keys, f.getMany(t, keys, cons))
			}
			f.apply(t, withdraw(keys[0], t0.Add(time.Minute)))
			recs := f.getMany(t, keys, latest)
			f.checkRecords(t, "withdrawn", keys, recs)
			if got := decide(recs[0], email); got.Allowed {
				t.Errorf("Decide = %+v after withdrawal", got)
			}
			n := int64(len(modes) + 2)
			f.checkCounts(t, "every call", counts{Batches: n, BatchKeys: 3 * n})
		})
	}
}

func TestGetManyErrors(t *testing.T) {
	f := newFixture(t, Config{MaxBytes: 1 << 20, Partitions: 1})
	keys := contacts(t, "errors", 3)
	f.apply(t, grant(keys[0], t0, email))
	ctx := context.Background()

	for _, n := range []int{0, 2, 4} {
		if err := f.c.GetMany(ctx, keys, latest, make([]*consent.Record, n)); err == nil {
			t.Errorf("GetMany(3 keys, %d outputs) = nil, want an error", n)
		}
	}
	f.checkCounts(t, "mismatched outputs", counts{})

	// A failed read fills nothing: the next call reads again.
	gone, cancel := context.WithCancel(ctx)
	cancel()
	if err := f.c.GetMany(gone, keys, latest, make([]*consent.Record, len(keys))); !errors.Is(err, context.Canceled) {
		t.Errorf("GetMany(cancelled) = %v, want context.Canceled", err)
	}
	f.checkCounts(t, "cancelled", counts{Batches: 1, BatchKeys: 3, Misses: 3})
	f.c.rc.Wait()
	for _, k := range keys {
		if f.cachedIn(k) {
			t.Errorf("%v cached after a failed read", k)
		}
	}
	f.checkRecords(t, "retry", keys, f.getMany(t, keys, latest))
	f.checkCounts(t, "retry", counts{Batches: 2, BatchKeys: 6, Misses: 6})
}

// Writers read their own writes through GetMany while readers batch the same
// contacts and a reader flushes now and then; at the end the cache agrees
// with the store.
func TestGetManyConcurrentWithWriters(t *testing.T) {
	const (
		writers = 4
		writes  = 20 // per writer
		readers = 4
		batches = 300 // per reader
	)
	f := newFixture(t, Config{MaxBytes: 1 << 20, Partitions: 1})
	keys := contacts(t, "concurrent", 6)
	ctx := context.Background()

	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			out := make([]*consent.Record, len(keys))
			for i := range writes {
				j := (w + i) % len(keys)
				at := t0.Add(time.Duration(i*writers+w) * time.Second)
				wr := grant(keys[j], at, email)
				if i%2 == 1 {
					wr = withdraw(keys[j], at, email)
				}
				tok, err := f.st.Apply(ctx, wr)
				if err != nil {
					t.Error(err)
					return
				}
				for _, cons := range []consent.Consistency{latest, {Mode: consent.AtLeastAsFresh, Token: tok}} {
					if err := f.c.GetMany(ctx, keys, cons, out); err != nil {
						t.Error(err)
						return
					}
					if out[j].Token.Seq < tok.Seq {
						t.Errorf("writer %d read token %d after its write %d (mode %d)", w, out[j].Token.Seq, tok.Seq, cons.Mode)
					}
				}
			}
		})
	}
	for r := range readers {
		wg.Go(func() {
			out := make([]*consent.Record, len(keys))
			for i := range batches {
				cons := latest
				if i%7 == 0 {
					cons = consent.Consistency{Mode: consent.FullyConsistent}
				}
				if err := f.c.GetMany(ctx, keys[r%2:], cons, out[r%2:]); err != nil {
					t.Error(err)
					return
				}
				if r == 0 && i%100 == 99 {
					f.c.Flush()
				}
			}
		})
	}
	wg.Wait()

	f.checkRecords(t, "after the writers", keys, f.getMany(t, keys, latest))
	f.c.rc.Wait()
	f.checkRecords(t, "after ristretto settled", keys, f.getMany(t, keys, latest))
}
