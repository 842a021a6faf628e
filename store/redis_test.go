package store_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/consentd/consentd/consent"
	"github.com/consentd/consentd/internal/redisproc"
	"github.com/consentd/consentd/internal/redistest"
	"github.com/consentd/consentd/store"
	"github.com/consentd/consentd/store/storetest"
)

func openRedis(t *testing.T, rdb redis.UniversalClient, cfg store.RedisConfig) *store.Redis {
	t.Helper()
	if cfg.SecretCheck == "" {
		cfg.SecretCheck = "test-secret-check"
	}
	if cfg.Chain == nil {
		cfg.Chain = storetest.ChainKey()
	}
	s, err := store.OpenRedis(context.Background(), rdb, cfg)
	if err != nil {
		t.Fatalf("OpenRedis: %v", err)
	}
	return s
}

// flush empties every master, so each subtest starts on an empty store.
func flush(t *testing.T, rdb redis.UniversalClient) {
	t.Helper()
	ctx := context.Background()
	var err error
	if c, ok := rdb.(*redis.ClusterClient); ok {
		err = c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error { return m.FlushAll(ctx).Err() })
	} else {
		err = rdb.FlushAll(ctx).Err()
	}
	if err != nil {
		t.Fatalf("FLUSHALL: %v", err)
	}
}

func TestRedisConformance(t *testing.T) {
	srv := redistest.Start(t, redisproc.Options{})
	rdb := srv.Client(t)
	storetest.Run(t, func(t *testing.T) storetest.Store {
		flush(t, rdb)
		return tamperableRedis{openRedis(t, rdb, store.RedisConfig{Partitions: 16, Init: true})}
	})
}

func TestRedisClusterConformance(t *testing.T) {
	cluster := redistest.StartCluster(t, 3)
	rdb := cluster.Client(t)
	storetest.Run(t, func(t *testing.T) storetest.Store {
		flush(t, rdb)
		return tamperableRedis{openRedis(t, rdb, store.RedisConfig{Partitions: 16, Init: true})}
	})
}

// tamperableRedis is the Redis store with storetest's tampering.
type tamperableRedis struct{ *store.Redis }

func (s tamperableRedis) EditEntry(t *testing.T, key consent.Key, tok consent.ConsistencyToken, edit func([]byte) []byte) {
	t.Helper()
	if err := store.EditRedisEntry(context.Background(), s.Redis, key, tok, edit); err != nil {
		t.Fatal(err)
	}
}

func (s tamperableRedis) EditRecord(t *testing.T, key consent.Key, edit func(consent.Record) consent.Record) {
	t.Helper()
	if err := store.EditRedisRecord(context.Background(), s.Redis, key, edit); err != nil {
		t.Fatal(err)
	}
}

// TestRedisRefusesAMisconfiguredSidecar: a sidecar with another partition
// count or another contact-key secret than the deployment must not start.
func TestRedisRefusesAMisconfiguredSidecar(t *testing.T) {
	rdb := redistest.Start(t, redisproc.Options{}).Client(t)
	openRedis(t, rdb, store.RedisConfig{Partitions: 16, SecretCheck: "a", Init: true})
	for _, cfg := range []store.RedisConfig{{Partitions: 8, SecretCheck: "a", Chain: storetest.ChainKey()}, {Partitions: 16, SecretCheck: "b", Chain: storetest.ChainKey()}} {
		if _, err := store.OpenRedis(context.Background(), rdb, cfg); err == nil || !strings.Contains(err.Error(), "every sidecar must be configured alike") {
			t.Errorf("OpenRedis(%+v) = %v, want a refusal", cfg, err)
		}
	}
}

// TestRedisDurability: with appendfsync always, a redis-server killed with
// SIGKILL right after acknowledging writes has all of them after a restart.
func TestRedisDurability(t *testing.T) {
	srv := redistest.Start(t, redisproc.Options{})
	rdb := srv.Client(t)
	s := openRedis(t, rdb, store.RedisConfig{Partitions: 4, Init: true})
	ctx := context.Background()
	var toks []consent.ConsistencyToken
	for i := range 200 {
		tok, err := s.Apply(ctx, consent.Write{Key: consent.Key{0: byte(i), 8: byte(i)}, Event: consent.Event{
			Kind: consent.EventGrant, Purposes: []string{"email_marketing"}, RequestID: fmt.Sprint("r", i),
			Proof: consent.Proof{Method: consent.MethodCheckbox, Source: consent.SourceFirstParty, CapturedAt: time.Now()}}})
		if err != nil {
			t.Fatal(err)
		}
		toks = append(toks, tok)
	}
	srv.Kill(t)
	if _, err := s.Get(ctx, consent.Key{}); !errors.Is(err, consent.ErrUnavailable) {
		t.Errorf("Get with redis down = %v, want ErrUnavailable", err)
	}
	srv.Restart(t)
	for i := range 200 {
		k := consent.Key{0: byte(i), 8: byte(i)}
		rec, err := s.Get(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		if rec.Token != toks[i] || rec.Purposes["email_marketing"].Grant == nil {
			t.Fatalf("write %d lost after SIGKILL: %+v", i, rec)
		}
		// A retry of the acknowledged write is recognised, not applied again.
		tok, err := s.Apply(ctx, consent.Write{Key: k, Event: consent.Event{
			Kind: consent.EventGrant, Purposes: []string{"email_marketing"}, RequestID: fmt.Sprint("r", i),
			Proof: consent.Proof{Method: consent.MethodCheckbox, Source: consent.SourceFirstParty, CapturedAt: time.Now()}}})
		if err != nil || tok != toks[i] {
			t.Fatalf("retry of write %d = %v, %v; want the first token %v", i, tok, err, toks[i])
		}
	}
}

// TestRedisWaitReplicas: with a replica attached, WaitReplicas 1 acknowledges
// writes; asking for more replicas than exist fails the write as
// unavailable (applied, but not as replicated as asked), and a retry with the
// same request id does not apply it twice.
func TestRedisWaitReplicas(t *testing.T) {
	primary := redistest.Start(t, redisproc.Options{})
	replica := redistest.Start(t, redisproc.Options{Config: []string{"replicaof 127.0.0.1 " + strconv.Itoa(primary.Port)}})
	ctx := context.Background()
	rdb := primary.Client(t)
	deadline := time.Now().Add(20 * time.Second)
	for {
		info, _ := rdb.Info(ctx, "replication").Result()
		if strings.Contains(info, "connected_slaves:1") && strings.Contains(info, "state=online") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica %s never came online: %s", replica.Addr(), info)
		}
		time.Sleep(50 * time.Millisecond)
	}
	w := consent.Write{Key: consent.Key{1}, Event: consent.Event{Kind: consent.EventWithdraw, RequestID: "w1",
		Proof: consent.Proof{CapturedAt: time.Now()}}}
	one := openRedis(t, rdb, store.RedisConfig{Partitions: 4, WaitReplicas: 1, Init: true})
	if _, err := one.Apply(ctx, w); err != nil {
		t.Fatalf("WaitReplicas 1 with one replica: %v", err)
	}
	two := openRedis(t, rdb, store.RedisConfig{Partitions: 4, WaitReplicas: 2, WaitTimeout: 200 * time.Millisecond})
	w2 := w
	w2.Key, w2.Event.RequestID = consent.Key{2}, "w2"
	if _, err := two.Apply(ctx, w2); !errors.Is(err, consent.ErrUnavailable) {
		t.Fatalf("WaitReplicas 2 with one replica: %v, want ErrUnavailable", err)
	}
	// A retry is no acknowledgement either until the replicas have it.
	if _, err := two.Apply(ctx, w2); !errors.Is(err, consent.ErrUnavailable) {
		t.Fatalf("retry with WaitReplicas 2 and one replica: %v, want ErrUnavailable", err)
	}
	if _, err := one.Apply(ctx, w2); err != nil {
		t.Fatalf("retry: %v", err)
	}
	events, _, err := one.Events(ctx, w2.Key, consent.ConsistencyToken{}, 10)
	if err != nil || len(events) != 1 {
		t.Errorf("after a failed WAIT and a retry: %d events, %v; want exactly 1", len(events), err)
	}

	// A frozen replica acknowledges nothing: the write is applied but not
	// acknowledged, under concurrent writers too (WAIT must run on the
	// connection that made the write, or it counts other writes).
	if err := syscall.Kill(replica.PID(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(replica.PID(), syscall.SIGCONT) })
	short := openRedis(t, rdb, store.RedisConfig{Partitions: 4, WaitReplicas: 1, WaitTimeout: 300 * time.Millisecond})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			w := w
			w.Key, w.Event.RequestID = consent.Key{3, byte(i)}, fmt.Sprint("frozen-", i)
			if _, err := short.Apply(ctx, w); !errors.Is(err, consent.ErrUnavailable) {
				t.Errorf("write %d with the replica frozen: %v, want ErrUnavailable", i, err)
			}
		})
	}
	wg.Wait()
}

// TestRedisChainUnderConcurrentSidecars: two sidecars (two stores, two
// connection pools) writing the same partitions at once, erasures included,
// extend one chain per partition without a fork: the history verifies and
// accounts for every write.
func TestRedisChainUnderConcurrentSidecars(t *testing.T) {
	srv := redistest.Start(t, redisproc.Options{})
	sidecars := []*store.Redis{
		openRedis(t, srv.Client(t), store.RedisConfig{Partitions: 2, Init: true}),
		openRedis(t, srv.Client(t), store.RedisConfig{Partitions: 2}),
	}
	ctx := context.Background()
	const writers, writes = 4, 40
	var (
		wg      sync.WaitGroup
		applied atomic.Int64
	)
	errs := make(chan error, len(sidecars)*writers)
	for si, s := range sidecars {
		for w := range writers {
			wg.Go(func() {
				for i := range writes {
					// Eight contacts shared by every writer: same contacts and
					// same partitions, so writes race on both.
					k := consent.Key{0: byte(i % 8), 1: 0xc0}
					ev := consent.Event{Kind: consent.EventGrant, Purposes: []string{"email_marketing"},
						RequestID: fmt.Sprintf("s%d-w%d-%d", si, w, i),
						Proof:     consent.Proof{Method: consent.MethodCheckbox, Source: consent.SourceFirstParty, CapturedAt: time.Now()}}
					if i%10 == 9 {
						ev = consent.Event{Kind: consent.EventErase, RequestID: ev.RequestID, Proof: consent.Proof{CapturedAt: time.Now()}}
					}
					// A grant captured before another writer's erasure is
					// refused by the rules: not a write.
					_, err := s.Apply(ctx, consent.Write{Key: k, Event: ev})
					switch {
					case errors.Is(err, consent.ErrSuppressed):
					case err != nil:
						errs <- err
						return
					default:
						applied.Add(1)
					}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	parts, err := sidecars[1].VerifyHistory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, p := range parts {
		if p.BreakCount > 0 {
			t.Errorf("partition %d broken: %+v", p.Partition, p.Breaks)
		}
		if uint64(p.Events+p.Erased) != p.HeadSeq {
			t.Errorf("partition %d: %d events + %d erased, head %d", p.Partition, p.Events, p.Erased, p.HeadSeq)
		}
		total += p.Events + p.Erased
	}
	if want := int(applied.Load()); total != want || want < len(sidecars)*writers*writes/2 {
		t.Errorf("the history accounts for %d writes, want %d (of %d attempted)", total, want, len(sidecars)*writers*writes)
	}
}

// TestRedisRefusesAnotherLayout: data written with another layout mark (by
// an earlier development version) is refused, with or without Init.
func TestRedisRefusesAnotherLayout(t *testing.T) {
	rdb := redistest.Start(t, redisproc.Options{}).Client(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name, mark, want string
	}{
		{"before the store id", "chain-v1", `the data has layout "chain-v1"`},
		{"another mark", "v0/0123", `the data has layout "v0"`},
	} {
		for _, init := range []bool{false, true} {
			t.Run(fmt.Sprint(tc.name, " init=", init), func(t *testing.T) {
				if err := rdb.FlushAll(ctx).Err(); err != nil {
					t.Fatal(err)
				}
				rdb.Set(ctx, "consentd:layout", tc.mark, 0)
				_, err := store.OpenRedis(ctx, rdb, store.RedisConfig{Partitions: 4, SecretCheck: "a", Chain: storetest.ChainKey(), Init: init})
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("OpenRedis = %v, want an error containing %q", err, tc.want)
				}
			})
		}
	}
}

// TestRedisVerifyUnderWrites: verification beside live traffic (new
// contacts and new events of old ones, no erasures) finds the history
// intact every time: what is written after the heads are read waits for
// the next run.
func TestRedisVerifyUnderWrites(t *testing.T) {
	srv := redistest.Start(t, redisproc.Options{})
	s := openRedis(t, srv.Client(t), store.RedisConfig{Partitions: 4, Init: true})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	write := func(i int) error {
		k := consent.Key{0: byte(i), 1: byte(i >> 8), 2: 0x77}
		_, err := s.Apply(ctx, consent.Write{Key: k, Event: consent.Event{Kind: consent.EventGrant, Purposes: []string{"email_marketing"},
			RequestID: fmt.Sprint("w", i), Proof: consent.Proof{Method: consent.MethodCheckbox, Source: consent.SourceFirstParty, CapturedAt: time.Now()}}})
		return err
	}
	for i := range 300 {
		if err := write(i); err != nil {
			t.Fatal(err)
		}
	}
	for g := range 2 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				// Half new contacts, half new events of the first 300.
				n := 300 + g*100000 + i
				if i%2 == 1 {
					n = i % 300
				}
				if err := write(n); err != nil && ctx.Err() == nil {
					t.Error(err)
					return
				}
			}
		})
	}
	for range 5 {
		parts, err := s.VerifyHistory(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range parts {
			if p.BreakCount > 0 {
				t.Errorf("partition %d broken under writes: %+v", p.Partition, p.Breaks)
			}
		}
	}
}

// TestRedisRectificationIsOneScript: what a rectification writes on the new
// identifier (the consents carried from the old one, then RectifyFrom) is
// one contact, so one partition's share of the batch: one run of the write
// script, which Redis applies whole or not at all. No reader, and no
// failure between two steps, can see the consents carried without the
// event that says where from, or the reverse. (No request ids: their
// claims run a script of their own, which this count would include.)
func TestRedisRectificationIsOneScript(t *testing.T) {
	rdb := redistest.Start(t, redisproc.Options{}).Client(t)
	s := openRedis(t, rdb, store.RedisConfig{Partitions: 16, Init: true})
	ctx := context.Background()
	at := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	proof := consent.Proof{Method: consent.MethodCheckbox, Source: consent.SourceFirstParty, CapturedAt: at, RecordedAt: at}
	old, fresh := consent.Key{0: 1, 8: 1}, consent.Key{0: 2, 8: 2}
	// Loads the script, so the count below is of EVALSHA alone.
	if _, err := s.Apply(ctx, consent.Write{Key: old, Event: consent.Event{Kind: consent.EventGrant, Purposes: []string{"email_marketing", "sales_outreach"}, Proof: proof}}); err != nil {
		t.Fatal(err)
	}
	if err := rdb.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	later := proof
	later.CapturedAt = at.Add(time.Hour)
	batch := []consent.Write{
		{Key: fresh, Event: consent.Event{Kind: consent.EventGrant, Purposes: []string{"email_marketing", "sales_outreach"}, Proof: proof}},
		{Key: fresh, Event: consent.Event{Kind: consent.EventWithdraw, Purposes: []string{"sales_outreach"}, Proof: later}},
		{Key: fresh, Event: consent.Event{Kind: consent.EventRectifyFrom, Proof: later, Other: consent.Link{Key: old, Kind: consent.IDEmail}}},
	}
	_, errs, err := s.ApplyBatch(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	scripts := int64(0)
	for _, line := range strings.Split(rdb.Info(ctx, "commandstats").Val(), "\n") {
		for _, cmd := range []string{"cmdstat_evalsha:calls=", "cmdstat_eval:calls="} {
			if rest, ok := strings.CutPrefix(line, cmd); ok {
				v, _, _ := strings.Cut(rest, ",")
				n, _ := strconv.ParseInt(v, 10, 64)
				scripts += n
			}
		}
	}
	if scripts != 1 {
		t.Errorf("the rectification's %d writes ran %d scripts, want 1", len(batch), scripts)
	}
	rec, err := s.Get(ctx, fresh)
	if err != nil {
		t.Fatal(err)
	}
	if !rec.Linked(old) || rec.Purposes["email_marketing"].Grant == nil || rec.Purposes["sales_outreach"].WithdrawnAt.IsZero() {
		t.Errorf("the new identifier's record is %+v, want the carried consents and the link", rec)
	}
}
