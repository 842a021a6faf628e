package store_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/consentd/consentd/consent"
	"github.com/consentd/consentd/internal/redisproc"
	"github.com/consentd/consentd/internal/redistest"
	"github.com/consentd/consentd/store"
	"github.com/consentd/consentd/store/storetest"
)

// deployment is a Redis for the identity tests: a standalone server or a
// 3-master Cluster, with a client of each master.
type deployment struct {
	name    string
	rdb     redis.UniversalClient
	servers []*redistest.Server
	masters []*redis.Client
	cluster *redistest.Cluster // nil for a standalone server
}

func standaloneDeployment(t *testing.T) *deployment {
	srv := redistest.Start(t, redisproc.Options{})
	c := srv.Client(t)
	return &deployment{name: "standalone", rdb: c, servers: []*redistest.Server{srv}, masters: []*redis.Client{c}}
}

func clusterDeployment(t *testing.T) *deployment {
	c := redistest.StartCluster(t, 3)
	d := &deployment{name: "cluster", rdb: c.Client(t), servers: c.Nodes, cluster: c}
	for _, n := range c.Nodes {
		d.masters = append(d.masters, n.Client(t))
	}
	return d
}

// both runs test on a standalone server and on a Cluster.
func both(t *testing.T, test func(t *testing.T, d *deployment)) {
	for _, start := range []func(*testing.T) *deployment{standaloneDeployment, clusterDeployment} {
		d := start(t)
		t.Run(d.name, func(t *testing.T) { test(t, d) })
	}
}

// nodeOf returns the master serving key.
func (d *deployment) nodeOf(t *testing.T, key string) (*redistest.Server, *redis.Client) {
	t.Helper()
	if d.cluster == nil {
		return d.servers[0], d.masters[0]
	}
	i := d.cluster.OwnerOf(t, d.cluster.KeySlot(t, key))
	return d.servers[i], d.masters[i]
}

func (d *deployment) flushAll(t *testing.T) {
	t.Helper()
	for _, m := range d.masters {
		if err := m.FlushAll(context.Background()).Err(); err != nil {
			t.Fatal(err)
		}
	}
}

func (d *deployment) dbSize(t *testing.T) int64 {
	t.Helper()
	var n int64
	for _, m := range d.masters {
		n += m.DBSize(context.Background()).Val()
	}
	return n
}

// fresh empties the deployment and initialises a store in it.
func (d *deployment) fresh(t *testing.T, cfg store.RedisConfig) *store.Redis {
	t.Helper()
	d.flushAll(t)
	cfg.Init = true
	return openRedis(t, d.rdb, cfg)
}

const identityPartitions = 4

func contact(i int) consent.Key { return consent.Key{0: byte(i), 1: byte(i >> 8), 2: 0x5a} }

func grantOf(k consent.Key, reqID string) consent.Write {
	return consent.Write{Key: k, Event: consent.Event{Kind: consent.EventGrant, Purposes: []string{"email_marketing"}, RequestID: reqID,
		Proof: consent.Proof{Method: consent.MethodCheckbox, Source: consent.SourceFirstParty, CapturedAt: time.Now()}}}
}

func withdrawalOf(k consent.Key, reqID string) consent.Write {
	return consent.Write{Key: k, Event: consent.Event{Kind: consent.EventWithdraw, RequestID: reqID, Proof: consent.Proof{CapturedAt: time.Now()}}}
}

func erasureOf(k consent.Key, reqID string) consent.Write {
	return consent.Write{Key: k, Event: consent.Event{Kind: consent.EventErase, RequestID: reqID, Proof: consent.Proof{CapturedAt: time.Now()}}}
}

func apply(t *testing.T, s *store.Redis, ws ...consent.Write) {
	t.Helper()
	for _, w := range ws {
		if _, err := s.Apply(context.Background(), w); err != nil {
			t.Fatalf("Apply: %v", err)
		}
	}
}

// writeSome grants n contacts, each in its partition.
func writeSome(t *testing.T, s *store.Redis, n int) {
	t.Helper()
	for i := range n {
		apply(t, s, grantOf(contact(i), fmt.Sprint("g", i)))
	}
}

func partitionOf(k consent.Key) uint32 { return k.Partition(identityPartitions) }

func tagOf(k consent.Key) string { return "{" + strconv.FormatUint(uint64(partitionOf(k)), 10) + "}" }

// wantFault fails unless err wraps kind (and so consent.ErrUnavailable) and
// its message holds every one of want.
func wantFault(t *testing.T, what string, err, kind error, want ...string) {
	t.Helper()
	if !errors.Is(err, kind) || !errors.Is(err, consent.ErrUnavailable) {
		t.Fatalf("%s = %v, want an error wrapping %v and consent.ErrUnavailable", what, err, kind)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%s = %q, want it to say %q", what, err, w)
		}
	}
}

// TestRedisInitialisation: an empty Redis is initialised only when asked;
// an initialised one is never initialised again; a partly wiped one is
// lost either way; and a refused open writes nothing.
func TestRedisInitialisation(t *testing.T) {
	d := standaloneDeployment(t)
	ctx := context.Background()
	cfg := store.RedisConfig{Partitions: identityPartitions, SecretCheck: "s", Chain: storetest.ChainKey()}
	initialised := func(t *testing.T) {
		s := d.fresh(t, cfg)
		writeSome(t, s, 8)
	}
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T)
		init  bool
		kind  error  // nil: no fault kind
		want  string // "" with kind nil: success
	}{
		{"empty", func(*testing.T) {}, false, store.ErrNotInitialised, "start one consentd once with --redis-init; if the store was wiped or replaced, restore it from a backup"},
		{"empty, init", func(*testing.T) {}, true, nil, ""},
		{"initialised", initialised, false, nil, ""},
		{"initialised, init", initialised, true, nil, "already initialised (consentd:layout): remove --redis-init"},
		{"layout mark deleted", func(t *testing.T) { initialised(t); d.rdb.Del(ctx, "consentd:layout") }, false, store.ErrStoreLost, "consentd:layout is missing but partition"},
		{"layout mark deleted, init", func(t *testing.T) { initialised(t); d.rdb.Del(ctx, "consentd:layout") }, true, store.ErrStoreLost, "wiped"},
		{"partition marker deleted", func(t *testing.T) { initialised(t); d.rdb.Del(ctx, "{2}:i") }, false, store.ErrStoreLost, "partition 2's marker {2}:i is missing"},
		{"partition marker deleted, init", func(t *testing.T) { initialised(t); d.rdb.Del(ctx, "{2}:i") }, true, store.ErrStoreLost, "partition 2's marker {2}:i is missing"},
		{"foreign keys, init", func(t *testing.T) { d.rdb.Set(ctx, "other", "x", 0) }, true, nil, "holds 1 keys but no consentd store"},
		{"interrupted initialisation", func(t *testing.T) { d.rdb.HSet(ctx, "{0}:i", "id", "x", "keys", 0) }, false, store.ErrNotInitialised, "interrupted"},
		{"interrupted initialisation, init", func(t *testing.T) { d.rdb.Set(ctx, "consentd:partitions", "4", 0) }, true, store.ErrNotInitialised, "interrupted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d.flushAll(t)
			tc.setup(t)
			keys := d.dbSize(t)
			c := cfg
			c.Init = tc.init
			s, err := store.OpenRedis(ctx, d.rdb, c)
			switch {
			case tc.kind != nil:
				wantFault(t, "OpenRedis", err, tc.kind, tc.want)
			case tc.want != "":
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("OpenRedis = %v, want an error saying %q", err, tc.want)
				}
			case err != nil:
				t.Fatalf("OpenRedis: %v", err)
			default:
				apply(t, s, grantOf(contact(100), "after-open"))
				if err := s.CheckIdentity(ctx); err != nil {
					t.Errorf("CheckIdentity after open: %v", err)
				}
				return
			}
			if got := d.dbSize(t); got != keys {
				t.Errorf("a refused open changed the keyspace: %d keys, then %d", keys, got)
			}
		})
	}
}

// TestRedisStoreID: every sidecar of a store reads the same id; a store
// wiped and initialised again has another.
func TestRedisStoreID(t *testing.T) {
	d := standaloneDeployment(t)
	cfg := store.RedisConfig{Partitions: identityPartitions}
	first := d.fresh(t, cfg)
	if first.StoreID() == "" {
		t.Fatal("a new Redis store has no id")
	}
	if other := openRedis(t, d.rdb, cfg); other.StoreID() != first.StoreID() {
		t.Errorf("a second sidecar reads store id %q, the first %q", other.StoreID(), first.StoreID())
	}
	if again := d.fresh(t, cfg); again.StoreID() == first.StoreID() {
		t.Errorf("the store initialised after a wipe has the wiped one's id %q", again.StoreID())
	}
}

// TestRedisWriteToAWipedStore: after FLUSHALL a write is refused as
// ErrStoreLost inside the script, and recreates nothing.
func TestRedisWriteToAWipedStore(t *testing.T) {
	both(t, func(t *testing.T, d *deployment) {
		ctx := context.Background()
		s := d.fresh(t, store.RedisConfig{Partitions: identityPartitions})
		writeSome(t, s, 16)
		d.flushAll(t)
		for i, w := range []consent.Write{withdrawalOf(contact(3), "w"), grantOf(contact(1000), "new")} {
			_, err := s.Apply(ctx, w)
			wantFault(t, fmt.Sprint("write ", i, " after FLUSHALL"), err, store.ErrStoreLost, "is missing", "wiped", "nothing written")
		}
		if _, _, err := s.ApplyBatch(ctx, []consent.Write{grantOf(contact(2000), "b1"), erasureOf(contact(4), "b2")}); !errors.Is(err, store.ErrStoreLost) {
			t.Errorf("batch after FLUSHALL: %v, want ErrStoreLost", err)
		}
		if n := d.dbSize(t); n != 0 {
			t.Errorf("%d keys after refused writes to a wiped store, want none", n)
		}
	})
}

// TestRedisCheckIdentity: each way a store stops being the one opened is
// caught, named, and holds; Redis being down is only transient.
func TestRedisCheckIdentity(t *testing.T) {
	ctx := context.Background()
	cfg := store.RedisConfig{Partitions: identityPartitions}
	both(t, func(t *testing.T, d *deployment) {
		k := contact(0)
		p := partitionOf(k)
		for _, tc := range []struct {
			name  string
			fault func(t *testing.T) []string // returns what the error must say
		}{
			{"FLUSHALL", func(t *testing.T) []string { d.flushAll(t); return []string{"is missing", "wiped"} }},
			{"one partition marker deleted", func(t *testing.T) []string {
				key := tagOf(k) + ":i"
				srv, node := d.nodeOf(t, key)
				node.Del(ctx, key)
				return []string{fmt.Sprintf("partition %d's marker %s is missing on %s", p, key, srv.Addr())}
			}},
			{"layout mark deleted", func(t *testing.T) []string {
				srv, node := d.nodeOf(t, "consentd:layout")
				node.Del(ctx, "consentd:layout")
				return []string{"consentd:layout is missing on " + srv.Addr()}
			}},
			{"another store in its place", func(t *testing.T) []string {
				d.fresh(t, cfg)
				return []string{"holds another store's"}
			}},
			{"sequence set back", func(t *testing.T) []string {
				key := tagOf(k) + ":s"
				srv, node := d.nodeOf(t, key)
				node.Set(ctx, key, 1, 0)
				return []string{fmt.Sprintf("partition %d's sequence %s went back from", p, key), "to 1 on " + srv.Addr()}
			}},
			// Redis answers, with WRONGTYPE: tampering, not an outage.
			{"sequence replaced by another type", func(t *testing.T) []string {
				key := tagOf(k) + ":s"
				_, node := d.nodeOf(t, key)
				node.Del(ctx, key)
				node.HSet(ctx, key, "x", "1")
				return []string{fmt.Sprintf("partition %d's sequence %s holds another type of key", p, key)}
			}},
			{"secret check replaced by another type", func(t *testing.T) []string {
				_, node := d.nodeOf(t, "consentd:secret-check")
				node.Del(ctx, "consentd:secret-check")
				node.RPush(ctx, "consentd:secret-check", "x")
				return []string{"consentd:secret-check holds another type of key"}
			}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				s := d.fresh(t, cfg)
				writeSome(t, s, 16)
				apply(t, s, withdrawalOf(k, "w1"), grantOf(k, "g-again")) // partition p's sequence ≥ 3
				if err := s.CheckIdentity(ctx); err != nil {
					t.Fatalf("CheckIdentity before the fault: %v", err)
				}
				want := tc.fault(t)
				err := s.CheckIdentity(ctx)
				wantFault(t, "CheckIdentity", err, store.ErrStoreLost, want...)
				// It holds for the process, and writes are refused.
				if again := s.CheckIdentity(ctx); !errors.Is(again, store.ErrStoreLost) {
					t.Errorf("CheckIdentity again: %v, want ErrStoreLost still", again)
				}
				if _, err := s.Apply(ctx, grantOf(contact(999), "after")); !errors.Is(err, store.ErrStoreLost) {
					t.Errorf("a write after the loss: %v, want ErrStoreLost", err)
				}
			})
		}
	})

	// What only a standalone server lets a test do to it.
	d := standaloneDeployment(t)
	srv := d.servers[0]
	t.Run("replaced by an empty server", func(t *testing.T) {
		s := d.fresh(t, cfg)
		writeSome(t, s, 16)
		srv.Kill(t)
		srv.LoadData(t, "")
		srv.Restart(t)
		wantFault(t, "CheckIdentity", s.CheckIdentity(ctx), store.ErrStoreLost, "is missing on "+srv.Addr())
	})
	t.Run("restored from an older copy", func(t *testing.T) {
		s := d.fresh(t, cfg)
		writeSome(t, s, 16)
		srv.Stop(t)
		older := srv.SaveData(t)
		srv.Restart(t)
		writeSome(t, s, 24)
		if err := s.CheckIdentity(ctx); err != nil {
			t.Fatalf("CheckIdentity after a clean restart: %v", err)
		}
		srv.Kill(t)
		srv.LoadData(t, older)
		srv.Restart(t)
		wantFault(t, "CheckIdentity", s.CheckIdentity(ctx), store.ErrStoreLost, "went back from")
	})
	t.Run("down, then back", func(t *testing.T) {
		s := d.fresh(t, cfg)
		writeSome(t, s, 4)
		srv.Kill(t)
		err := s.CheckIdentity(ctx)
		if !errors.Is(err, consent.ErrUnavailable) || errors.Is(err, store.ErrStoreLost) {
			t.Errorf("CheckIdentity with Redis down = %v, want ErrUnavailable and not ErrStoreLost", err)
		}
		srv.Restart(t)
		if err := s.CheckIdentity(ctx); err != nil {
			t.Errorf("CheckIdentity after Redis is back: %v", err)
		}
	})
}

// TestRedisAuditSettings: each setting changed at runtime on one master is
// named with its value, the value needed and the node, and clears when set
// back; OpenRedis refuses it.
func TestRedisAuditSettings(t *testing.T) {
	ctx := context.Background()
	both(t, func(t *testing.T, d *deployment) {
		s := d.fresh(t, store.RedisConfig{Partitions: identityPartitions})
		writeSome(t, s, 8)
		srv, node := d.servers[len(d.servers)-1], d.masters[len(d.masters)-1]
		for _, tc := range []struct{ name, bad, want string }{
			{"maxmemory-policy", "allkeys-lru", "noeviction"},
			{"maxmemory-policy", "volatile-lru", "noeviction"},
			{"appendonly", "no", "yes"},
			{"appendfsync", "everysec", "always"},
		} {
			t.Run(tc.name+" "+tc.bad, func(t *testing.T) {
				if err := s.Audit(ctx); err != nil {
					t.Fatalf("Audit before: %v", err)
				}
				if err := node.ConfigSet(ctx, tc.name, tc.bad).Err(); err != nil {
					t.Fatal(err)
				}
				err := s.Audit(ctx)
				wantFault(t, "Audit", err, store.ErrSettings, fmt.Sprintf("%s is %q on %s, consentd needs %s", tc.name, tc.bad, srv.Addr(), tc.want))
				if errors.Is(err, store.ErrStoreLost) {
					t.Errorf("Audit = %v: a setting alone is no loss", err)
				}
				for _, other := range d.servers[:len(d.servers)-1] {
					if strings.Contains(err.Error(), other.Addr()) {
						t.Errorf("Audit = %q names %s, whose settings are right", err, other.Addr())
					}
				}
				_, err = store.OpenRedis(ctx, d.rdb, store.RedisConfig{Partitions: identityPartitions, SecretCheck: "test-secret-check", Chain: storetest.ChainKey()})
				wantFault(t, "OpenRedis", err, store.ErrSettings, tc.name)
				if err := node.ConfigSet(ctx, tc.name, tc.want).Err(); err != nil {
					t.Fatal(err)
				}
				if err := s.Audit(ctx); err != nil {
					t.Errorf("Audit after %s is set back: %v", tc.name, err)
				}
			})
		}
	})
}

// TestRedisAuditMissingKeys: a key deleted without a write is counted
// missing on the node that held it.
func TestRedisAuditMissingKeys(t *testing.T) {
	ctx := context.Background()
	k := contact(5)
	both(t, func(t *testing.T, d *deployment) {
		for _, tc := range []struct{ name, key string }{
			{"a record", store.RecordKey(identityPartitions, k)},
			{"a history", tagOf(k) + ":h:" + string(k[:])},
			{"a change stream", tagOf(k) + ":f"},
			{"the contact-key secret check", "consentd:secret-check"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				s := d.fresh(t, store.RedisConfig{Partitions: identityPartitions})
				writeSome(t, s, 16)
				if err := s.Audit(ctx); err != nil {
					t.Fatalf("Audit before: %v", err)
				}
				srv, node := d.nodeOf(t, tc.key)
				if n := node.Del(ctx, tc.key).Val(); n != 1 {
					t.Fatalf("DEL %q deleted %d keys", tc.key, n)
				}
				wantFault(t, "Audit", s.Audit(ctx), store.ErrStoreLost, "1 keys missing on "+srv.Addr()+": evicted or deleted")
			})
		}
	})
}

// TestRedisAuditEviction: keys evicted under memory pressure after the
// policy was changed at runtime are a loss, not just a wrong setting.
func TestRedisAuditEviction(t *testing.T) {
	ctx := context.Background()
	d := standaloneDeployment(t)
	rdb := d.masters[0]
	s := d.fresh(t, store.RedisConfig{Partitions: identityPartitions})
	writeSome(t, s, 300)
	if err := s.Audit(ctx); err != nil {
		t.Fatalf("Audit before: %v", err)
	}
	used := infoInt(t, rdb, "memory", "used_memory")
	for _, kv := range [][2]string{{"maxmemory", strconv.FormatInt(used+256<<10, 10)}, {"maxmemory-policy", "allkeys-lru"}} {
		if err := rdb.ConfigSet(ctx, kv[0], kv[1]).Err(); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { rdb.ConfigSet(ctx, "maxmemory", "0") })
	writes, refused := 0, false
	for infoInt(t, rdb, "stats", "evicted_keys") == 0 {
		if writes == 100000 {
			t.Fatal("no key evicted after 100000 writes")
		}
		for range 100 {
			// Some writes may be refused: their partition's marker or
			// sequence was evicted.
			if _, err := s.Apply(ctx, grantOf(contact(1000+writes), fmt.Sprint("e", writes))); errors.Is(err, store.ErrStoreLost) {
				refused = true
			}
			writes++
		}
	}
	// Setting the policy back does not bring the keys back.
	rdb.ConfigSet(ctx, "maxmemory-policy", "noeviction")
	rdb.ConfigSet(ctx, "maxmemory", "0")
	// The store keeps the first loss it saw for the process: Audit's
	// eviction count, or a write of the loop above that found its
	// partition's sequence or marker evicted and was refused. Either names
	// the node; which comes first depends on what LRU picked.
	err := s.Audit(ctx)
	want := "evicted on " + rdb.Options().Addr
	if refused {
		want = "on " + rdb.Options().Addr
	}
	wantFault(t, "Audit", err, store.ErrStoreLost, want)
	t.Logf("%d writes until Redis evicted keys; Audit: %v", writes, err)
}

func infoInt(t *testing.T, rdb *redis.Client, section, field string) int64 {
	t.Helper()
	info, err := rdb.Info(context.Background(), section).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no %s in INFO %s", field, section)
	return 0
}

// TestRedisAuditCountsEveryWrite: after each kind of write the count is
// exact: Audit finds nothing missing and nothing extra.
func TestRedisAuditCountsEveryWrite(t *testing.T) {
	ctx := context.Background()
	d := standaloneDeployment(t)
	s := d.fresh(t, store.RedisConfig{Partitions: identityPartitions})
	k, l, m := contact(1), contact(2), contact(3)
	for _, step := range []struct {
		name string
		ws   []consent.Write
	}{
		{"first write of a contact", []consent.Write{grantOf(k, "k1")}},
		{"another write of it", []consent.Write{withdrawalOf(k, "k2")}},
		{"a replay, which only refreshes its request id", []consent.Write{withdrawalOf(k, "k2")}},
		{"a refused write", []consent.Write{{Key: l, Event: consent.Event{Kind: consent.EventGrant, RequestID: "bad"}}}},
		{"erasure of a contact with history", []consent.Write{erasureOf(k, "k3")}},
		{"erasure of a contact never seen", []consent.Write{erasureOf(l, "l1")}},
		{"a write refused after erasure", []consent.Write{grantOf(l, "l2")}},
		{"grant and erasure of a new contact in one batch", []consent.Write{grantOf(m, "m1"), erasureOf(m, "m2"), erasureOf(m, "m3")}},
	} {
		if _, _, err := s.ApplyBatch(ctx, step.ws); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if err := s.Audit(ctx); err != nil {
			t.Errorf("Audit after %s: %v", step.name, err)
		}
		if w := s.Warnings(); len(w) > 0 {
			t.Errorf("after %s: %q", step.name, w)
		}
	}
}

// TestRedisAuditForeignKeys: keys consentd did not write are reported once,
// as a warning.
func TestRedisAuditForeignKeys(t *testing.T) {
	ctx := context.Background()
	d := standaloneDeployment(t)
	s := d.fresh(t, store.RedisConfig{Partitions: identityPartitions})
	writeSome(t, s, 4)
	d.rdb.Set(ctx, "someone-else", "x", 0)
	for round := range 2 {
		if err := s.Audit(ctx); err != nil {
			t.Fatalf("Audit: %v", err)
		}
		w := s.Warnings()
		switch {
		case round == 0 && (len(w) != 1 || !strings.Contains(w[0], "1 keys without expiry that consentd did not write") || !strings.Contains(w[0], d.servers[0].Addr())):
			t.Errorf("first Audit's warnings: %q, want one naming the node and the key count", w)
		case round == 1 && len(w) != 0:
			t.Errorf("second Audit's warnings: %q, want none (reported once)", w)
		}
	}
}

// TestRedisAuditUnderWrites: Audit and CheckIdentity beside two sidecars'
// writes (new contacts, more events, erasures with and without history,
// replays) never raise a false alarm, on a Cluster also while a partition's
// slot moves to another master. With 2048 partitions Audit's pipeline is
// larger than Redis reads at once, so writes land between its reads and
// rounds are judged by bounds.
func TestRedisAuditUnderWrites(t *testing.T) {
	both(t, func(t *testing.T, d *deployment) { auditUnderWrites(t, d, identityPartitions) })
	t.Run("2048 partitions", func(t *testing.T) {
		if inexact := auditUnderWrites(t, standaloneDeployment(t), 2048); inexact == 0 {
			t.Error("no round was judged by bounds: the test did not exercise them")
		}
	})
}

// auditUnderWrites returns how many rounds were judged by bounds.
func auditUnderWrites(t *testing.T, d *deployment, partitions uint32) uint64 {
	cfg := store.RedisConfig{Partitions: partitions}
	a := d.fresh(t, cfg)
	b := openRedis(t, d.rdb, cfg)
	// c judges every round at its first read, by bounds when writes
	// moved the counters meanwhile.
	c := openRedis(t, d.rdb, cfg)
	store.SetAuditAttempts(c, 1)
	ctx, cancel := context.WithCancel(context.Background())
	var (
		wg          sync.WaitGroup
		writes      [2]int
		unavailable [2]int // writes sent again after UNAVAILABLE
	)
	for w, s := range []*store.Redis{a, b} {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil && i < 20000; i++ {
				k := contact(w*10000 + i/6)
				var wr consent.Write
				switch i % 6 {
				case 0, 1:
					wr = grantOf(k, fmt.Sprint("g", w, i))
				case 2:
					wr = grantOf(k, fmt.Sprint("g", w, i-2)) // a replay of the write two before
				case 3:
					wr = erasureOf(k, fmt.Sprint("e", w, i)) // with history
				case 4:
					wr = erasureOf(contact(50000+w*10000+i), fmt.Sprint("e", w, i)) // never seen
				case 5:
					wr = withdrawalOf(k, fmt.Sprint("w", w, i))
				}
				_, err := s.Apply(ctx, wr)
				// Audits are this test's subject, not the writes' availability:
				// a write refused as unavailable (a Cluster slot redirected more
				// often than the client follows, seen under CI load) is sent
				// again, as a caller would, a few times.
				for retry := 0; retry < 5 && errors.Is(err, consent.ErrUnavailable) && ctx.Err() == nil; retry++ {
					unavailable[w]++
					time.Sleep(50 * time.Millisecond)
					_, err = s.Apply(ctx, wr)
				}
				switch {
				case err == nil, errors.Is(err, consent.ErrSuppressed), errors.Is(err, consent.ErrInvalid):
					writes[w]++
				case ctx.Err() == nil:
					t.Errorf("write: %v", err)
					return
				}
			}
		})
	}
	var audits, checks int
	wg.Go(func() {
		for ctx.Err() == nil {
			for _, s := range []*store.Redis{b, c} {
				if err := s.Audit(ctx); err != nil && ctx.Err() == nil {
					t.Errorf("Audit under writes: %v", err)
					return
				}
			}
			audits++
			if err := b.CheckIdentity(ctx); err != nil && ctx.Err() == nil {
				t.Errorf("CheckIdentity under writes: %v", err)
				return
			}
			checks++
		}
	})
	if d.cluster != nil {
		time.Sleep(500 * time.Millisecond)
		slot := d.cluster.KeySlot(t, "{0}:i")
		d.cluster.MigrateSlot(t, slot, (d.cluster.OwnerOf(t, slot)+1)%len(d.servers))
	}
	time.Sleep(1500 * time.Millisecond)
	cancel()
	wg.Wait()
	for _, s := range []*store.Redis{b, c} {
		if err := s.Audit(context.Background()); err != nil {
			t.Errorf("Audit after the writes: %v", err)
		}
		if w := s.Warnings(); len(w) > 0 {
			t.Errorf("warnings: %q", w)
		}
	}
	sb, sc := b.AuditStats(), c.AuditStats()
	t.Logf("%d+%d writes (%d+%d sent again after UNAVAILABLE); %d audits each: with retries %d node rounds inexact, %d skipped; at the first read %d inexact, %d skipped; %d identity checks",
		writes[0], writes[1], unavailable[0], unavailable[1], audits, sb.Inexact.Load(), sb.Skipped.Load(), sc.Inexact.Load(), sc.Skipped.Load(), checks)
	return sc.Inexact.Load()
}

// TestRedisAuditDuringSlotMigration: while a partition's slot is split
// between two Cluster masters, its keys are counted on neither alone, and
// Audit neither takes the move for a loss nor misses a loss afterwards.
func TestRedisAuditDuringSlotMigration(t *testing.T) {
	ctx := context.Background()
	d := clusterDeployment(t)
	s := d.fresh(t, store.RedisConfig{Partitions: identityPartitions})
	writeSome(t, s, 200) // some 150 keys in each partition's slot
	slot := d.cluster.KeySlot(t, "{0}:i")
	midway := false
	d.cluster.MigrateSlotMidway(t, slot, (d.cluster.OwnerOf(t, slot)+1)%len(d.servers), func() {
		midway = true
		for _, check := range []func(context.Context) error{s.Audit, s.CheckIdentity} {
			if err := check(ctx); err != nil {
				t.Errorf("midway through the migration: %v", err)
			}
		}
	})
	if !midway {
		t.Fatal("the migration never paused midway")
	}
	if err := s.Audit(ctx); err != nil {
		t.Errorf("Audit after the migration: %v", err)
	}
	if st := s.AuditStats(); st.Skipped.Load() == 0 {
		t.Error("no node round was skipped while the slot moved")
	}
	key := store.RecordKey(identityPartitions, contact(0))
	srv, node := d.nodeOf(t, key)
	node.Del(ctx, key)
	wantFault(t, "Audit after a record was deleted", s.Audit(ctx), store.ErrStoreLost, "1 keys missing on "+srv.Addr())
}

// TestRedisAuditAfterRestart: a clean restart of Redis (appendfsync always)
// is no loss: its counters start again, its keys are all there.
func TestRedisAuditAfterRestart(t *testing.T) {
	ctx := context.Background()
	d := standaloneDeployment(t)
	srv := d.servers[0]
	s := d.fresh(t, store.RedisConfig{Partitions: identityPartitions})
	writeSome(t, s, 50)
	if err := s.Audit(ctx); err != nil {
		t.Fatalf("Audit before: %v", err)
	}
	srv.Kill(t)
	if err := s.Audit(ctx); !errors.Is(err, consent.ErrUnavailable) || errors.Is(err, store.ErrStoreLost) || errors.Is(err, store.ErrSettings) {
		t.Errorf("Audit with Redis down = %v, want only ErrUnavailable", err)
	}
	srv.Restart(t)
	for _, check := range []func(context.Context) error{s.Audit, s.CheckIdentity} {
		if err := check(ctx); err != nil {
			t.Errorf("after a restart: %v", err)
		}
	}
	writeSome(t, s, 60)
	if err := s.Audit(ctx); err != nil {
		t.Errorf("Audit after more writes: %v", err)
	}
}

// TestRedisCommandsDenied: where CONFIG is denied or renamed, OpenRedis
// refuses naming the flag that hands the settings to the operator; with it
// Audit still counts keys. Where INFO is denied too, only the markers are
// checked.
func TestRedisCommandsDenied(t *testing.T) {
	ctx := context.Background()
	acl := redistest.Start(t, redisproc.Options{})
	renamed := redistest.Start(t, redisproc.Options{Config: []string{`rename-command CONFIG ""`}})
	admin := acl.Client(t)
	for user, rules := range map[string][]any{"noconfig": {"-config"}, "noinfo": {"-config", "-info"}} {
		if err := admin.Do(ctx, append([]any{"ACL", "SETUSER", user, "on", ">pw", "~*", "&*", "+@all"}, rules...)...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	as := func(t *testing.T, user string) *redis.Client {
		c := redis.NewClient(&redis.Options{Addr: acl.Addr(), Username: user, Password: "pw"})
		t.Cleanup(func() { c.Close() })
		return c
	}
	for _, tc := range []struct {
		name   string
		client func(t *testing.T) (user, admin *redis.Client)
		want   string
		counts bool // Audit still counts keys
	}{
		{"CONFIG denied by ACL", func(t *testing.T) (*redis.Client, *redis.Client) { return as(t, "noconfig"), admin }, "CONFIG GET is renamed or denied", true},
		{"CONFIG renamed", func(t *testing.T) (*redis.Client, *redis.Client) { return renamed.Client(t), renamed.Client(t) }, "CONFIG GET is renamed or denied", true},
		{"CONFIG and INFO denied by ACL", func(t *testing.T) (*redis.Client, *redis.Client) { return as(t, "noinfo"), admin }, "INFO is denied", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rdb, admin := tc.client(t)
			admin.FlushAll(ctx)
			cfg := store.RedisConfig{Partitions: identityPartitions, SecretCheck: "s", Chain: storetest.ChainKey(), Init: true}
			_, err := store.OpenRedis(ctx, rdb, cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "--redis-operator-checks-settings") {
				t.Fatalf("OpenRedis = %v, want a refusal saying %q and naming --redis-operator-checks-settings", err, tc.want)
			}
			if n := admin.DBSize(ctx).Val(); n != 0 {
				t.Errorf("the refused open wrote %d keys", n)
			}
			cfg.OperatorChecksSettings = true
			s, err := store.OpenRedis(ctx, rdb, cfg)
			if err != nil {
				t.Fatalf("OpenRedis with OperatorChecksSettings: %v", err)
			}
			writeSome(t, s, 8)
			if err := s.Audit(ctx); err != nil {
				t.Fatalf("Audit: %v", err)
			}
			admin.Del(ctx, store.RecordKey(identityPartitions, contact(1)))
			if err := s.Audit(ctx); tc.counts != errors.Is(err, store.ErrStoreLost) {
				t.Errorf("Audit after a record was deleted = %v; want ErrStoreLost %v", err, tc.counts)
			}
			if tc.counts {
				return // lost already, for good
			}
			admin.Del(ctx, "{0}:i")
			wantFault(t, "CheckIdentity", s.CheckIdentity(ctx), store.ErrStoreLost, "{0}:i is missing")
		})
	}
}

// flushCounter is an Invalidator that counts the feed's flushes, fences
// and losses.
type flushCounter struct {
	mu                     sync.Mutex
	flushes, fences, losts int
}

func (f *flushCounter) Invalidate(consent.Key, consent.ConsistencyToken) {}
func (f *flushCounter) Fence(uint32, uint64, time.Time) {
	f.mu.Lock()
	f.fences++
	f.mu.Unlock()
}

func (f *flushCounter) Lost(uint32) {
	f.mu.Lock()
	f.losts++
	f.mu.Unlock()
}

func (f *flushCounter) Flush() {
	f.mu.Lock()
	f.flushes++
	f.mu.Unlock()
}

func (f *flushCounter) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.flushes
}

func (f *flushCounter) counts() (fences, losts int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fences, f.losts
}

// TestRedisFeedAfterAWipe: a change feed following a store that is wiped
// flushes the cache (the partition markers it names the data by are gone),
// reports the partitions Lost and moves no fence while the markers stay
// gone, and, reading only, recreates no key in the empty keyspace.
func TestRedisFeedAfterAWipe(t *testing.T) {
	both(t, func(t *testing.T, d *deployment) {
		s := d.fresh(t, store.RedisConfig{Partitions: identityPartitions})
		writeSome(t, s, 16)
		inv := &flushCounter{}
		feed := store.NewFeed(d.rdb, identityPartitions, inv, store.FeedConfig{Block: 20 * time.Millisecond})
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Go(func() { feed.Run(ctx) })
		defer func() { cancel(); wg.Wait() }()
		deadline := time.Now().Add(10 * time.Second)
		for inv.count() < identityPartitions { // each partition flushes as it first syncs
			if time.Now().After(deadline) {
				t.Fatalf("the feed synced %d partitions in 10 s", inv.count())
			}
			time.Sleep(10 * time.Millisecond)
		}
		synced := inv.count()
		d.flushAll(t)
		for inv.count() == synced {
			if time.Now().After(deadline) {
				t.Fatal("the feed did not flush the cache after FLUSHALL")
			}
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(100 * time.Millisecond) // let rounds begun before the wipe end
		fences, losts := inv.counts()
		time.Sleep(300 * time.Millisecond) // a few more rounds of the feed
		if f, l := inv.counts(); f != fences || l == losts {
			t.Errorf("after the wipe the feed moved %d fences and reported %d losses, want no fence and losses reported", f-fences, l-losts)
		}
		if n := d.dbSize(t); n != 0 {
			t.Errorf("%d keys after the feed followed a wiped store, want none", n)
		}
	})
}

// TestRedisWaitFloor: with WAIT, writes a master applied but no replica
// confirmed are not acknowledged, and a failover that drops them is no
// loss; a sequence below an acknowledged write still is. Real replication:
// the replica is cut off (REPLICAOF NO ONE), writes to the master fail
// WAIT, CheckIdentity reads them, then the old master follows the
// promoted replica and drops them.
func TestRedisWaitFloor(t *testing.T) {
	ctx := context.Background()
	master, replica := redistest.Start(t, redisproc.Options{}), redistest.Start(t, redisproc.Options{})
	mc, rc := master.Client(t), replica.Client(t)
	follow := func(t *testing.T, c *redis.Client, of *redistest.Server) {
		t.Helper()
		host, port, _ := strings.Cut(of.Addr(), ":")
		if err := c.Do(ctx, "REPLICAOF", host, port).Err(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(c.Info(ctx, "replication").Val(), "master_link_status:up") {
			if time.Now().After(deadline) {
				t.Fatal("replication did not come up in 10 s")
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	follow(t, rc, master)
	cfg := store.RedisConfig{Partitions: identityPartitions, Init: true, WaitReplicas: 1, WaitTimeout: 2 * time.Second}
	s := openRedis(t, mc, cfg)
	k := contact(0)
	apply(t, s, grantOf(k, "g1")) // acknowledged: on the replica too
	if err := rc.Do(ctx, "REPLICAOF", "NO", "ONE").Err(); err != nil {
		t.Fatal(err)
	}
	s2 := openRedis(t, mc, store.RedisConfig{Partitions: identityPartitions, WaitReplicas: 1, WaitTimeout: 50 * time.Millisecond})
	for i := range 3 {
		if _, err := s2.Apply(ctx, withdrawalOf(k, fmt.Sprint("w", i))); !errors.Is(err, consent.ErrUnavailable) {
			t.Fatalf("a write the replica cannot confirm = %v, want ErrUnavailable", err)
		}
	}
	for _, st := range []*store.Redis{s, s2} {
		if err := st.CheckIdentity(ctx); err != nil {
			t.Fatalf("CheckIdentity with unconfirmed writes on the master: %v", err)
		}
	}
	follow(t, mc, replica) // the old master drops the unconfirmed writes
	for _, st := range []*store.Redis{s, s2} {
		if err := st.CheckIdentity(ctx); err != nil {
			t.Errorf("CheckIdentity after unacknowledged writes were dropped = %v, want nil: nothing acknowledged was lost", err)
		}
	}
	// Below the acknowledged write is a loss.
	key := tagOf(k) + ":s"
	rc.Set(ctx, key, 0, 0)
	// s reads the old master, now rc's replica: wait until it has the loss,
	// which replication brings it asynchronously.
	if n, err := rc.Wait(ctx, 1, 10*time.Second).Result(); err != nil || n != 1 {
		t.Fatalf("WAIT for the old master to replicate the loss = %d, %v; want 1", n, err)
	}
	wantFault(t, "CheckIdentity after an acknowledged write was lost", s.CheckIdentity(ctx), store.ErrStoreLost, "went back from 1 to 0")
}

// TestRedisWriteBelowTheFloor: a write whose partition's sequence went back
// (a rollback with the store id intact) is refused before the script runs,
// without waiting for CheckIdentity.
func TestRedisWriteBelowTheFloor(t *testing.T) {
	ctx := context.Background()
	d := standaloneDeployment(t)
	s := d.fresh(t, store.RedisConfig{Partitions: identityPartitions})
	k := contact(0)
	apply(t, s, grantOf(k, "g1"), withdrawalOf(k, "w1"), grantOf(k, "g2"))
	key := tagOf(k) + ":s"
	d.masters[0].Set(ctx, key, 1, 0)
	_, err := s.Apply(ctx, withdrawalOf(k, "w2"))
	wantFault(t, "a write below the floor", err, store.ErrStoreLost, "went back from 3 to 1", "nothing written")
	if got := d.masters[0].Get(ctx, key).Val(); got != "1" {
		t.Errorf("%s = %s after the refused write, want 1", key, got)
	}
}

// TestRedisCheckIdentityWindow: CheckIdentity's cost does not grow with
// the partitions: each call reads at most 256 partition markers (plus one
// per Cluster master), every partition is checked within ceil(P/256)
// calls, and a master wiped alone is found by the next call.
func TestRedisCheckIdentityWindow(t *testing.T) {
	ctx := context.Background()
	const partitions = 1024
	hgets := func(d *deployment) int64 {
		var n int64
		for _, m := range d.masters {
			for _, line := range strings.Split(m.Info(ctx, "commandstats").Val(), "\n") {
				if rest, ok := strings.CutPrefix(line, "cmdstat_hget:calls="); ok {
					v, _, _ := strings.Cut(rest, ",")
					c, _ := strconv.ParseInt(v, 10, 64)
					n += c
				}
			}
		}
		return n
	}
	both(t, func(t *testing.T, d *deployment) {
		s := d.fresh(t, store.RedisConfig{Partitions: partitions})
		for _, m := range d.masters {
			m.ConfigResetStat(ctx)
		}
		for range partitions / 256 {
			if err := s.CheckIdentity(ctx); err != nil {
				t.Fatalf("CheckIdentity: %v", err)
			}
		}
		if got, most := hgets(d), int64(partitions/256*(256+len(d.masters))); got > most {
			t.Errorf("%d CheckIdentity calls read %d markers, want at most %d", partitions/256, got, most)
		}
		if _, node := d.nodeOf(t, "{1000}:i"); node.Del(ctx, "{1000}:i").Val() != 1 {
			t.Fatal("could not delete {1000}:i")
		}
		var err error
		calls := 0
		for calls < partitions/256 && err == nil {
			err = s.CheckIdentity(ctx)
			calls++
		}
		wantFault(t, "CheckIdentity", err, store.ErrStoreLost, "partition 1000's marker {1000}:i is missing")
		t.Logf("a deleted marker found after %d calls", calls)
		if d.cluster == nil {
			return
		}
		s = d.fresh(t, store.RedisConfig{Partitions: partitions})
		if err := s.CheckIdentity(ctx); err != nil {
			t.Fatalf("CheckIdentity: %v", err)
		}
		d.masters[2].FlushAll(ctx)
		wantFault(t, "CheckIdentity after one master was wiped", s.CheckIdentity(ctx), store.ErrStoreLost, "is missing on "+d.servers[2].Addr())
	})
}

// TestRedisAuditInfoRefusedAtRuntime: INFO allowed at open and refused
// later is settings drift naming the node, not a clean audit (the eviction
// and key checks would silently stop).
func TestRedisAuditInfoRefusedAtRuntime(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t, redisproc.Options{})
	admin := srv.Client(t)
	if err := admin.Do(ctx, "ACL", "SETUSER", "u", "on", ">pw", "~*", "&*", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), Username: "u", Password: "pw"})
	t.Cleanup(func() { rdb.Close() })
	s := openRedis(t, rdb, store.RedisConfig{Partitions: identityPartitions, Init: true})
	writeSome(t, s, 4)
	if err := s.Audit(ctx); err != nil {
		t.Fatalf("Audit: %v", err)
	}
	if err := admin.Do(ctx, "ACL", "SETUSER", "u", "-info").Err(); err != nil {
		t.Fatal(err)
	}
	wantFault(t, "Audit with INFO refused", s.Audit(ctx), store.ErrSettings, "INFO is refused on "+srv.Addr())
}

// TestRedisClusterNodesDenied: a user allowed CLUSTER SLOTS (the client
// needs it) but not CLUSTER NODES (Audit needs it) is refused at open,
// naming it, rather than starting and failing every Audit.
func TestRedisClusterNodesDenied(t *testing.T) {
	ctx := context.Background()
	c := redistest.StartCluster(t, 3)
	for _, n := range c.Nodes {
		if err := n.Client(t).Do(ctx, "ACL", "SETUSER", "u", "on", ">pw", "~*", "&*", "+@all", "-cluster|nodes").Err(); err != nil {
			t.Fatal(err)
		}
	}
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs(), Username: "u", Password: "pw"})
	t.Cleanup(func() { rdb.Close() })
	cfg := store.RedisConfig{Partitions: identityPartitions, SecretCheck: "s", Chain: storetest.ChainKey(), Init: true}
	_, err := store.OpenRedis(ctx, rdb, cfg)
	if err == nil || !strings.Contains(err.Error(), "CLUSTER NODES is denied") || !strings.Contains(err.Error(), "cluster|nodes") {
		t.Fatalf("OpenRedis = %v, want a refusal naming CLUSTER NODES", err)
	}
}

// TestRedisAuditSentinelFailback: with Sentinel, a failover and a failback
// to a master that evicted keys before consentd opened the store are no
// loss: the baseline of evicted_keys belongs to the process (run_id), not
// to "the Sentinel master", and messages name the real node.
func TestRedisAuditSentinelFailback(t *testing.T) {
	ctx := context.Background()
	a, b := redistest.Start(t, redisproc.Options{}), redistest.Start(t, redisproc.Options{})
	ac, bc := a.Client(t), b.Client(t)
	// a evicts some foreign keys before consentd ever sees it.
	used := infoInt(t, ac, "memory", "used_memory")
	ac.ConfigSet(ctx, "maxmemory", strconv.FormatInt(used+256<<10, 10))
	ac.ConfigSet(ctx, "maxmemory-policy", "allkeys-lru")
	for i := 0; infoInt(t, ac, "stats", "evicted_keys") == 0; i++ {
		if i == 10000 {
			t.Fatal("no key evicted")
		}
		ac.Set(ctx, fmt.Sprint("foreign", i), strings.Repeat("x", 4096), 0)
	}
	ac.ConfigSet(ctx, "maxmemory", "0")
	ac.ConfigSet(ctx, "maxmemory-policy", "noeviction")
	ac.FlushAll(ctx)
	follow := func(c *redis.Client, of *redistest.Server) {
		t.Helper()
		host, port, _ := strings.Cut(of.Addr(), ":")
		if err := c.Do(ctx, "REPLICAOF", host, port).Err(); err != nil {
			t.Fatal(err)
		}
	}
	follow(bc, a)
	host, port, _ := strings.Cut(a.Addr(), ":")
	sent := redistest.Start(t, redisproc.Options{Sentinel: true, Config: []string{
		"sentinel monitor m " + host + " " + port + " 1", "sentinel down-after-milliseconds m 1000", "sentinel failover-timeout m 5000"}})
	sc := sent.Client(t)
	rdb := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: "m", SentinelAddrs: []string{sent.Addr()}})
	t.Cleanup(func() { rdb.Close() })
	s := openRedis(t, rdb, store.RedisConfig{Partitions: identityPartitions, Init: true})
	writeSome(t, s, 8)
	if err := s.Audit(ctx); err != nil {
		t.Fatalf("Audit: %v", err)
	}
	failover := func(from *redis.Client, to *redistest.Server) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		// The replica must hold every write first: a failover to one that
		// missed writes is a loss indeed.
		for from.Do(ctx, "WAIT", 1, 1000).Val() != int64(1) {
			if time.Now().After(deadline) {
				t.Fatalf("%s got no replica in 30 s", to.Addr())
			}
		}
		for {
			if time.Now().After(deadline) {
				t.Fatalf("no failover to %s in 30 s", to.Addr())
			}
			addr, _ := sc.Do(ctx, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", "m").StringSlice()
			if len(addr) == 2 && addr[0]+":"+addr[1] == to.Addr() {
				break
			}
			sc.Do(ctx, "SENTINEL", "FAILOVER", "m") // refused until a replica is ready
			time.Sleep(200 * time.Millisecond)
		}
		// Audit until the client follows the new master; no loss meanwhile.
		for {
			err := s.Audit(ctx)
			if errors.Is(err, store.ErrStoreLost) {
				t.Fatalf("Audit after a failover to %s: %v", to.Addr(), err)
			}
			if err == nil && strings.Contains(fmt.Sprint(rdb.Do(ctx, "ROLE").Val()), "master") {
				if err := s.Audit(ctx); err != nil {
					t.Fatalf("Audit after a failover to %s: %v", to.Addr(), err)
				}
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("Audit after a failover to %s: %v", to.Addr(), err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	failover(ac, b)
	failover(bc, a)
	// Messages name the node, not "the Sentinel master".
	ac.Del(ctx, store.RecordKey(identityPartitions, contact(1)))
	wantFault(t, "Audit after a record was deleted", s.Audit(ctx), store.ErrStoreLost, "missing on "+a.Addr())
}
