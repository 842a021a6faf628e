package cache

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/consentd/consentd/consent"
)

// warm returns a fixture whose cache holds granted records for n contacts.
func warm(b *testing.B, n int) (*fixture, []consent.Key) {
	b.Helper()
	f := newFixture(b, Config{MaxBytes: 64 << 20, Partitions: 1})
	keys := make([]consent.Key, n)
	for i := range keys {
		keys[i] = key(b, fmt.Sprintf("contact%d@example.com", i))
		f.apply(b, grant(keys[i], t0, email, sales))
		f.get(b, keys[i], latest)
	}
	f.c.rc.Wait()
	for _, k := range keys {
		f.get(b, k, latest)
	}
	if s := f.c.Stats(); s.Hits.Load() != uint64(n) {
		b.Fatalf("warm-up: %d hits, want %d", s.Hits.Load(), n)
	}
	return f, keys
}

// checkAllHits fails the benchmark if anything it measured was a miss.
func checkAllHits(b *testing.B, f *fixture, misses uint64) {
	b.Helper()
	if got := f.c.Stats().Misses.Load(); got != misses {
		b.Fatalf("%d misses while measuring hits", got-misses)
	}
}

func BenchmarkGetHit(b *testing.B) {
	f, keys := warm(b, 1)
	k, ctx := keys[0], context.Background()
	misses := f.c.Stats().Misses.Load()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.c.Get(ctx, k, latest); err != nil {
			b.Fatal(err)
		}
	}
	checkAllHits(b, f, misses)
}

func BenchmarkGetHitParallel(b *testing.B) {
	f, keys := warm(b, 64)
	ctx := context.Background()
	misses := f.c.Stats().Misses.Load()
	var next atomic.Uint32
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(next.Add(1))
		for pb.Next() {
			if _, err := f.c.Get(ctx, keys[i%len(keys)], latest); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
	b.StopTimer()
	checkAllHits(b, f, misses)
}

// BenchmarkGetMiss reads through a disabled cache: the embedded store's cost.
func BenchmarkGetMiss(b *testing.B) {
	f := newFixture(b, Config{MaxBytes: 0, Partitions: 1})
	k := key(b, "ada@example.com")
	f.apply(b, grant(k, t0, email, sales))
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.c.Get(ctx, k, latest); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHitAndDecide is a Check's hot path after the key is computed.
func BenchmarkHitAndDecide(b *testing.B) {
	f, keys := warm(b, 1)
	k, ctx := keys[0], context.Background()
	purposes := consent.DefaultPurposes()
	p := &purposes[0]
	if p.Name != email {
		b.Fatalf("first default purpose is %q, want %q", p.Name, email)
	}
	misses := f.c.Stats().Misses.Load()
	b.ReportAllocs()
	for b.Loop() {
		rec, err := f.c.Get(ctx, k, latest)
		if err != nil {
			b.Fatal(err)
		}
		if d := consent.Decide(rec, p, now); !d.Allowed {
			b.Fatalf("Decide = %+v", d)
		}
	}
	checkAllHits(b, f, misses)
}

// TestHitAllocatesNothing: the cache-hit decision path (lookup and Decide)
// allocates nothing of its own. Run without -race (scripts/test does).
func TestHitAndDecideAllocatesNothing(t *testing.T) {
	f := newFixture(t, Config{MaxBytes: 64 << 20, Partitions: 1})
	k := key(t, "alloc@example.com")
	f.apply(t, grant(k, t0, email))
	f.get(t, k, latest)
	f.c.rc.Wait()
	p := &consent.DefaultPurposes()[0]
	ctx := context.Background()
	misses := f.c.Stats().Misses.Load()
	n := testing.AllocsPerRun(1000, func() {
		rec, err := f.c.Get(ctx, k, latest)
		if err != nil {
			t.Fatal(err)
		}
		consent.Decide(rec, p, t0)
	})
	if got := f.c.Stats().Misses.Load(); got != misses {
		t.Fatalf("%d misses while measuring hits", got-misses)
	}
	if n != 0 {
		t.Errorf("hit and decide allocate %v times per call, want 0", n)
	}
}
