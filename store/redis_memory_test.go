package store_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/consentd/consentd/consent"
	"github.com/consentd/consentd/internal/contactkey"
	"github.com/consentd/consentd/internal/redisproc"
	"github.com/consentd/consentd/internal/redistest"
	"github.com/consentd/consentd/store"
)

// TestRedisMemoryPerContact loads contacts with all four purposes granted
// (one specific grant each, with full proof) and measures what Redis holds
// per contact: records alone, with history, and with request ids. Records
// for 10 million contacts must fit well under 4 GiB.
func TestRedisMemoryPerContact(t *testing.T) {
	const contacts = 20000
	rdb := redistest.Start(t, redisproc.Options{Config: []string{"appendfsync no"}}).Client(t)
	// appendfsync no: fast, and durability is not what this measures.
	s := openRedis(t, rdb, store.RedisConfig{Partitions: 16, Init: true, OperatorChecksSettings: true})
	keys, err := contactkey.New([]byte("memory-test-secret-0123456789"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	before := usedMemory(t, rdb)
	purposes := []string{"email_marketing", "sales_outreach", "market_research", "ad_retargeting"}
	captured := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < contacts; i += 8 {
				k, _ := keys.Key(fmt.Sprintf("person%07d@example.com", i))
				for j, p := range purposes {
					_, err := s.Apply(ctx, consent.Write{Key: k, Event: consent.Event{
						Kind: consent.EventGrant, Purposes: []string{p}, RequestID: fmt.Sprintf("import-%07d-%d", i, j),
						Proof: consent.Proof{Method: consent.MethodCheckbox, Source: consent.SourceFirstParty,
							EvidenceRef: fmt.Sprintf("form:signup-%07d", i), NoticeVersion: "2026-05", Actor: "web-signup",
							CapturedAt: captured, RecordedAt: captured},
					}})
					if err != nil {
						t.Error(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	total := usedMemory(t, rdb) - before
	// Request ids: with their contacts, and bound in their callers' spaces.
	requests := deleteAll(t, rdb, "{*}:q:*") + deleteAll(t, rdb, "{*}:k:*")
	afterRequests := usedMemory(t, rdb) - before
	deleteAll(t, rdb, "{*}:h:*")
	afterHistory := usedMemory(t, rdb) - before
	// The change streams are capped (FeedMaxLen per partition), so their
	// share per contact vanishes at scale; here they hold every write.
	deleteAll(t, rdb, "{*}:f")
	streams := afterHistory - (usedMemory(t, rdb) - before)
	records := copiedMemory(t, rdb)
	withHistory := records + afterRequests - afterHistory
	withRequests := withHistory + total - afterRequests
	per := func(b int64) float64 { return float64(b) / contacts }
	t.Logf("Redis memory per contact (4 purposes granted, full proof, %d contacts): records %.0f B, +history %.0f B, +request ids %.0f B (%d request keys); change streams here %.0f B (capped at scale)",
		contacts, per(records), per(withHistory), per(withRequests), requests, per(streams))
	t.Logf("extrapolated to 10M contacts: records %.2f GiB, with history %.2f GiB, with request ids %.2f GiB",
		per(records)*1e7/(1<<30), per(withHistory)*1e7/(1<<30), per(withRequests)*1e7/(1<<30))
	// "Well under 4 GiB": at most 3 GiB, so a regression shows long before
	// the promise breaks.
	if got := per(records) * 1e7; got >= 3<<30 {
		t.Errorf("records for 10M contacts would take %.2f GiB, want at most 3 GiB", got/(1<<30))
	}
}

// copiedMemory is what the keys left in rdb take in a Redis that never
// held others: deleted keys leave their tables' bucket arrays behind (the
// expiry table sized for every request id deleted), which are not the
// records'.
func copiedMemory(t *testing.T, rdb *redis.Client) int64 {
	t.Helper()
	ctx := context.Background()
	fresh := redistest.Start(t, redisproc.Options{Config: []string{"appendfsync no"}}).Client(t)
	before := usedMemory(t, fresh)
	iter := rdb.Scan(ctx, 0, "*", 1000).Iterator()
	var keys []string
	flush := func() {
		dumps := make([]*redis.StringCmd, len(keys))
		if _, err := rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
			for i, k := range keys {
				dumps[i] = pipe.Dump(ctx, k)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if _, err := fresh.Pipelined(ctx, func(pipe redis.Pipeliner) error {
			for i, k := range keys {
				pipe.Restore(ctx, k, 0, dumps[i].Val())
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		keys = keys[:0]
	}
	for iter.Next(ctx) {
		if keys = append(keys, iter.Val()); len(keys) == 1000 {
			flush()
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	flush()
	return usedMemory(t, fresh) - before
}

func usedMemory(t *testing.T, rdb *redis.Client) int64 {
	t.Helper()
	info, err := rdb.Info(context.Background(), "memory").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no used_memory in INFO")
	return 0
}

func deleteAll(t *testing.T, rdb *redis.Client, pattern string) int {
	t.Helper()
	ctx := context.Background()
	n := 0
	iter := rdb.Scan(ctx, 0, pattern, 1000).Iterator()
	var batch []string
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == 1000 {
			n += len(batch)
			rdb.Del(ctx, batch...)
			batch = batch[:0]
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	if len(batch) > 0 {
		n += len(batch)
		rdb.Del(ctx, batch...)
	}
	return n
}
