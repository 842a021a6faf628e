package cache

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/consentd/consentd/consent"
	"github.com/consentd/consentd/internal/redisproc"
	"github.com/consentd/consentd/internal/redistest"
	"github.com/consentd/consentd/store"
	"github.com/consentd/consentd/store/storetest"
)

// TestFillRaceAcrossSidecars is the fill race with Redis and two sidecars:
// this cache (sidecar B) misses and reads the grant from Redis; before it
// inserts, sidecar A withdraws and B's change feed reports it. The fill is
// refused, and no later read answers with the grant.
func TestFillRaceAcrossSidecars(t *testing.T) {
	srv := redistest.Start(t, redisproc.Options{})
	ctx := context.Background()
	cfg := store.RedisConfig{Partitions: 4, SecretCheck: "fill-race", Chain: storetest.ChainKey()}
	first := cfg
	first.Init = true
	a, err := store.OpenRedis(ctx, srv.Client(t), first)
	if err != nil {
		t.Fatal(err)
	}
	b, err := store.OpenRedis(ctx, srv.Client(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(b, Config{MaxBytes: 1 << 20, Partitions: 4, Lease: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	feed := store.NewFeed(srv.Client(t), 4, c, store.FeedConfig{Block: 20 * time.Millisecond})
	feedCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { feed.Run(feedCtx) })
	t.Cleanup(func() { stop(); wg.Wait() })

	k := key(t, "racer@example.com")
	if _, err := a.Apply(ctx, grant(k, t0, email)); err != nil {
		t.Fatal(err)
	}
	p := &consent.Purpose{Name: email}
	waitFresh(t, c, k.Partition(4))

	c.afterRead = func(consent.Key) {
		c.afterRead = nil
		withdrawn, err := a.Apply(ctx, withdraw(k, t0.Add(time.Minute)))
		if err != nil {
			t.Error(err)
			return
		}
		// Wait until B's feed has reported the withdrawal.
		for !c.covers(k, withdrawn) {
			time.Sleep(time.Millisecond)
		}
	}
	rec, err := c.Get(ctx, k, consent.Consistency{})
	if err != nil {
		t.Fatal(err)
	}
	if d := consent.Decide(rec, p, now); !d.Allowed {
		t.Fatalf("the racing read itself should have seen the grant, got %+v", d)
	}
	if got := c.Stats().RejectedFills.Load(); got != 1 {
		t.Errorf("RejectedFills = %d, want 1", got)
	}
	c.rc.Wait()
	for range 5 {
		rec, err := c.Get(ctx, k, consent.Consistency{})
		if err != nil {
			t.Fatal(err)
		}
		if d := consent.Decide(rec, p, now); d.Allowed || d.Reason != consent.ReasonWithdrawn {
			t.Fatalf("after the race: %+v, want DENY/withdrawn", d)
		}
	}
}

func waitFresh(t *testing.T, c *Cache, p uint32) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !c.fresh(p) {
		if time.Now().After(deadline) {
			t.Fatal("the feed never fenced the partition")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
