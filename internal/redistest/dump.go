package redistest

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/consentd/consentd/internal/redisproc"
)

// StartFromDump runs a redis-server, as Start does, serving the keyspace of
// the RDB file dump (a copy: dump itself is never written). Redis 7 ignores
// an RDB when appendonly is on and no AOF exists, and starts empty, so the
// server first loads the dump with appendonly off, then turns it on (which
// writes the AOF from the loaded keys) and restarts with consentd's
// settings: what an operator does to restore a dump.
func StartFromDump(t testing.TB, dump string) *Server {
	t.Helper()
	s := Start(t, redisproc.Options{Config: []string{"appendonly no"}})
	s.Stop(t)
	if err := copyTree(dump, filepath.Join(s.Dir, "dump.rdb")); err != nil {
		t.Fatalf("redistest: StartFromDump: %v", err)
	}
	s.Restart(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.admin.ConfigSet(ctx, "appendonly", "yes").Err(); err != nil {
		t.Fatalf("redistest: StartFromDump: %v", err)
	}
	for {
		info, err := s.admin.Info(ctx, "persistence").Result()
		if err != nil {
			t.Fatalf("redistest: StartFromDump: %v", err)
		}
		f := infoFields(info)
		if f["aof_enabled"] == "1" && f["aof_rewrite_in_progress"] == "0" && f["aof_rewrite_scheduled"] == "0" {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("redistest: StartFromDump: the AOF was not written within 30 s")
		case <-time.After(20 * time.Millisecond):
		}
	}
	s.Stop(t)
	s.Reconfigure(t, "appendonly yes")
	s.Restart(t)
	return s
}

// CopyKeys copies every key of from, with its time to live, into the
// Cluster (DUMP and RESTORE): the way to give a Cluster the keyspace of a
// standalone server's dump, which a Cluster node cannot load (its keys
// belong to slots of every node).
func (c *Cluster) CopyKeys(t testing.TB, from *Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	src := from.admin
	to := c.Client(t)
	iter := src.Scan(ctx, 0, "*", 1000).Iterator()
	n := 0
	for iter.Next(ctx) {
		k := iter.Val()
		v, err := src.Dump(ctx, k).Result()
		if err != nil {
			t.Fatalf("redistest: CopyKeys: DUMP: %v", err)
		}
		ttl, err := src.PTTL(ctx, k).Result()
		if err != nil {
			t.Fatalf("redistest: CopyKeys: PTTL: %v", err)
		}
		if ttl < 0 {
			ttl = 0
		}
		if err := to.RestoreReplace(ctx, k, ttl, v).Err(); err != nil && !strings.Contains(err.Error(), "BUSYKEY") {
			t.Fatalf("redistest: CopyKeys: RESTORE: %v", err)
		}
		n++
	}
	if err := iter.Err(); err != nil {
		t.Fatalf("redistest: CopyKeys: SCAN: %v", err)
	}
	if n == 0 {
		t.Fatalf("redistest: CopyKeys: %s holds no keys", from.Addr())
	}
}
