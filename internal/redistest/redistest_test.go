package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/consentd/consentd/internal/redisproc"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// assertGone fails unless every pid has exited and been reaped.
func assertGone(t *testing.T, pids ...int) {
	t.Helper()
	for _, pid := range pids {
		if pid <= 0 {
			t.Errorf("bad pid %d", pid)
			continue
		}
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("pid %d: kill(pid, 0) = %v, want ESRCH", pid, err)
		}
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("pid %d: /proc entry still there (%v)", pid, err)
		}
	}
}

func TestStandalone(t *testing.T) {
	var pids []int
	t.Run("run", func(t *testing.T) {
		s := Start(t, redisproc.Options{Config: []string{"maxmemory 100mb"}})
		pids = append(pids, s.PID())
		if !strings.HasPrefix(s.Addr(), "127.0.0.1:") || s.Port <= 0 || s.Port >= redisproc.MaxPort {
			t.Errorf("Addr() = %q, Port = %d", s.Addr(), s.Port)
		}
		ctx := context.Background()
		rdb := s.Client(t)
		if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
		if got, err := rdb.Get(ctx, "k").Result(); err != nil || got != "v" {
			t.Fatalf("GET k = %q, %v; want v", got, err)
		}
		cfg, err := rdb.ConfigGet(ctx, "*").Result()
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{
			"maxmemory":      "104857600",
			"appendonly":     "yes",
			"appendfsync":    "always",
			"save":           "",
			"protected-mode": "no",
			"dir":            s.Dir,
			"bind":           "127.0.0.1",
		}
		for k, v := range want {
			if cfg[k] != v {
				t.Errorf("CONFIG GET %s = %q, want %q", k, cfg[k], v)
			}
		}
		if _, err := os.Stat(s.Dir + "/redis.log"); err != nil {
			t.Errorf("no redis.log: %v", err)
		}
	})
	assertGone(t, pids...)
}

func TestKillRestartKeepsAcknowledgedWrites(t *testing.T) {
	var pids []int
	t.Run("run", func(t *testing.T) {
		s := Start(t, redisproc.Options{})
		ctx := context.Background()
		rdb := s.Client(t)
		for i := range 100 {
			if err := rdb.Set(ctx, fmt.Sprint("k", i), i, 0).Err(); err != nil {
				t.Fatal(err)
			}
		}
		old := s.PID()
		pids = append(pids, old)
		s.Kill(t)
		assertGone(t, old)
		if s.PID() != 0 {
			t.Errorf("PID() after Kill = %d, want 0", s.PID())
		}
		if c, err := net.DialTimeout("tcp", s.Addr(), time.Second); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections after Kill", s.Addr())
		}
		s.Kill(t) // a no-op on a stopped server

		port, dir := s.Port, s.Dir
		s.Restart(t)
		pids = append(pids, s.PID())
		if s.PID() == old || s.PID() == 0 {
			t.Errorf("PID after Restart = %d (old %d)", s.PID(), old)
		}
		if s.Port != port || s.Dir != dir {
			t.Errorf("Restart moved the server: port %d→%d dir %s→%s", port, s.Port, dir, s.Dir)
		}
		for i := range 100 {
			got, err := rdb.Get(ctx, fmt.Sprint("k", i)).Result()
			if err != nil || got != strconv.Itoa(i) {
				t.Fatalf("GET k%d after SIGKILL+Restart = %q, %v; want %d", i, got, err, i)
			}
		}
	})
	assertGone(t, pids...)
}

func TestStopRestart(t *testing.T) {
	var pids []int
	t.Run("run", func(t *testing.T) {
		s := Start(t, redisproc.Options{})
		ctx := context.Background()
		rdb := s.Client(t)
		if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
		old := s.PID()
		pids = append(pids, old)
		s.Stop(t)
		assertGone(t, old)
		if log, _ := os.ReadFile(s.Dir + "/redis.log"); !strings.Contains(string(log), "ready to exit") {
			t.Errorf("redis.log does not show a graceful shutdown:\n%s", log)
		}
		s.Restart(t)
		pids = append(pids, s.PID())
		if got, err := rdb.Get(ctx, "k").Result(); err != nil || got != "v" {
			t.Fatalf("GET k after Stop+Restart = %q, %v; want v", got, err)
		}
	})
	assertGone(t, pids...)
}

// TestReconfigure: a server restarted after Reconfigure runs with the
// added directives, on the same port and data.
func TestReconfigure(t *testing.T) {
	s := Start(t, redisproc.Options{})
	ctx := context.Background()
	rdb := s.Client(t)
	if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	s.Stop(t)
	s.Reconfigure(t, "maxmemory-policy allkeys-lru")
	s.Restart(t)
	got, err := rdb.ConfigGet(ctx, "maxmemory-policy").Result()
	if err != nil || got["maxmemory-policy"] != "allkeys-lru" {
		t.Errorf("maxmemory-policy after Reconfigure and Restart = %v, %v; want allkeys-lru", got, err)
	}
	if v, err := rdb.Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Errorf("GET k = %q, %v; want v", v, err)
	}
}

// fatalTB records the first Fatal and collects cleanups, so a test can check
// how Start fails.
type fatalTB struct {
	testing.TB
	mu       sync.Mutex
	msg      string
	cleanups []func()
}

func (f *fatalTB) Helper() {}
func (f *fatalTB) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.msg = fmt.Sprintf(format, args...)
	f.mu.Unlock()
	runtime.Goexit()
}
func (f *fatalTB) Fatal(args ...any) { f.Fatalf("%s", fmt.Sprint(args...)) }
func (f *fatalTB) Cleanup(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cleanups = append(f.cleanups, fn)
}

func (f *fatalTB) run(fn func(testing.TB)) string {
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
	return f.msg
}

func TestStartFailureShowsLog(t *testing.T) {
	f := &fatalTB{TB: t}
	msg := f.run(func(tb testing.TB) {
		Start(tb, redisproc.Options{Config: []string{"no-such-directive 1"}})
	})
	if !strings.Contains(msg, "no-such-directive") {
		t.Errorf("Start with a bad config: fatal message does not show redis' complaint:\n%s", msg)
	}
}

func TestCleanupAfterFailure(t *testing.T) {
	f := &fatalTB{TB: t}
	var pid int
	msg := f.run(func(tb testing.TB) {
		s := Start(tb, redisproc.Options{})
		pid = s.PID()
		tb.Fatalf("the test fails")
	})
	if msg != "the test fails" {
		t.Fatalf("fatal message %q", msg)
	}
	assertGone(t, pid)
}

func TestCluster(t *testing.T) {
	var pids []int
	t.Run("run", func(t *testing.T) {
		start := time.Now()
		c := StartCluster(t, 3)
		t.Logf("StartCluster: %v", time.Since(start))
		for _, n := range c.Nodes {
			pids = append(pids, n.PID())
		}
		if len(c.Addrs()) != 3 {
			t.Fatalf("Addrs() = %v", c.Addrs())
		}
		ctx := context.Background()
		rdb := c.Client(t)

		// Keys across many slots land on every node.
		for i := range 300 {
			if err := rdb.Set(ctx, fmt.Sprint("key", i), i, 0).Err(); err != nil {
				t.Fatal(err)
			}
		}
		for i := range 300 {
			if got, err := rdb.Get(ctx, fmt.Sprint("key", i)).Result(); err != nil || got != strconv.Itoa(i) {
				t.Fatalf("GET key%d = %q, %v", i, got, err)
			}
		}
		for i, n := range c.Nodes {
			size, err := n.Client(t).DBSize(ctx).Result()
			if err != nil || size == 0 {
				t.Errorf("node %d DBSIZE = %d, %v; want keys on every node", i, size, err)
			}
		}
		if got := c.OwnerOf(t, 0); got != 0 {
			t.Errorf("OwnerOf(0) = %d, want 0", got)
		}
		if got := c.OwnerOf(t, 16383); got != 2 {
			t.Errorf("OwnerOf(16383) = %d, want 2", got)
		}

		t.Run("MigrateSlotUnderTraffic", func(t *testing.T) { testMigrate(t, c) })

		t.Run("KillRestartNode", func(t *testing.T) {
			n := c.Nodes[1]
			old := n.PID()
			n.Kill(t)
			assertGone(t, old)
			n.Restart(t)
			pids = append(pids, n.PID())
			c.WaitStable(t)
			for i := range 300 {
				if got, err := rdb.Get(ctx, fmt.Sprint("key", i)).Result(); err != nil || got != strconv.Itoa(i) {
					t.Fatalf("GET key%d after restarting node 1 = %q, %v", i, got, err)
				}
			}
		})
	})
	assertGone(t, pids...)
}

func testMigrate(t *testing.T, c *Cluster) {
	ctx := context.Background()
	rdb := c.Client(t)
	var redirects redirectCounter
	rdb.OnNewNode(func(n *redis.Client) { n.AddHook(&redirects) })
	const tag = "{mig}"
	slot := c.KeySlot(t, tag)
	from := c.OwnerOf(t, slot)
	to := (from + 1) % len(c.Nodes)

	// Enough keys for several MIGRATE batches.
	const n = 1000
	if _, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range n {
			p.Set(ctx, fmt.Sprintf("%s:%d", tag, i), "v0", 0)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	// Traffic on the slot while it moves: SET then GET of existing keys and
	// of keys created during the migration.
	stop := make(chan struct{})
	errc := make(chan error, 1)
	var ops int
	var opsDone atomic.Int64
	go func() {
		defer close(errc)
		after := -1
		for i := 0; i < 20000; i++ {
			select {
			case <-stop:
				if after < 0 {
					after = i
				}
			default:
			}
			if after >= 0 && i-after >= 50 {
				break
			}
			key := fmt.Sprintf("%s:%d", tag, (i*7919)%(2*n)) // half exist, half are new
			val := strconv.Itoa(i)
			if err := rdb.Set(ctx, key, val, 0).Err(); err != nil {
				errc <- fmt.Errorf("op %d: SET %s: %w", i, key, err)
				return
			}
			got, err := rdb.Get(ctx, key).Result()
			if err != nil || got != val {
				errc <- fmt.Errorf("op %d: GET %s = %q, %v; want %q", i, key, got, err, val)
				return
			}
			ops = i + 1
			opsDone.Store(int64(ops))
		}
	}()

	time.Sleep(20 * time.Millisecond) // let traffic start
	start := time.Now()
	before := opsDone.Load()
	c.MigrateSlot(t, slot, to)
	took := time.Since(start)
	during := opsDone.Load() - before
	close(stop)
	if err := <-errc; err != nil {
		t.Fatalf("traffic during migration: %v", err)
	}
	t.Logf("migrated slot %d from node %d to %d in %v; %d ops of traffic, %d during the migration; redirections: %d ASK, %d MOVED",
		slot, from, to, took, ops, during, redirects.ask.Load(), redirects.moved.Load())
	if redirects.moved.Load() == 0 {
		t.Errorf("the traffic saw no MOVED: it did not run against the migrated slot")
	}

	if got := c.OwnerOf(t, slot); got != to {
		t.Errorf("OwnerOf(%d) = %d after MigrateSlot to %d", slot, got, to)
	}
	// The target now holds every key of the slot, and the source none.
	keysOn := func(i int) int64 {
		k, err := c.Nodes[i].Client(t).ClusterCountKeysInSlot(ctx, slot).Result()
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	if got := keysOn(from); got != 0 {
		t.Errorf("source still has %d keys in slot %d", got, slot)
	}
	if got := keysOn(to); got < n {
		t.Errorf("target has %d keys in slot %d, want >= %d", got, slot, n)
	}
	for i := range n {
		if err := rdb.Get(ctx, fmt.Sprintf("%s:%d", tag, i)).Err(); err != nil {
			t.Fatalf("GET after migration: %v", err)
		}
	}
	// A direct GET on the target works (no MOVED): it owns the slot.
	if err := c.Nodes[to].Client(t).Get(ctx, tag+":0").Err(); err != nil {
		t.Errorf("GET on the target node: %v", err)
	}

	// Migrating to the current owner is a no-op; migrating back works.
	c.MigrateSlot(t, slot, to)
	c.MigrateSlot(t, slot, from)
	if got := c.OwnerOf(t, slot); got != from {
		t.Errorf("OwnerOf(%d) = %d after migrating back to %d", slot, got, from)
	}
}

// redirectCounter is a go-redis hook counting the ASK and MOVED replies a
// node sent.
type redirectCounter struct{ ask, moved atomic.Int64 }

func (h *redirectCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *redirectCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (h *redirectCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if err != nil {
			switch {
			case strings.HasPrefix(err.Error(), "ASK "):
				h.ask.Add(1)
			case strings.HasPrefix(err.Error(), "MOVED "):
				h.moved.Add(1)
			}
		}
		return err
	}
}

// TestSaveAndLoadData: a copy saved from a stopped server comes back after
// LoadData and Restart (later writes gone), and LoadData("") restarts it
// empty.
func TestSaveAndLoadData(t *testing.T) {
	s := Start(t, redisproc.Options{})
	ctx := context.Background()
	rdb := s.Client(t)
	get := func(k string) string { return rdb.Get(ctx, k).Val() }
	if err := rdb.Set(ctx, "a", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	s.Stop(t)
	saved := s.SaveData(t)
	s.Restart(t)
	if err := rdb.Set(ctx, "b", "2", 0).Err(); err != nil {
		t.Fatal(err)
	}
	s.Kill(t)
	s.LoadData(t, saved)
	s.Restart(t)
	if a, b := get("a"), get("b"); a != "1" || b != "" {
		t.Errorf("after loading the saved copy: a=%q b=%q, want a=1 and no b", a, b)
	}
	s.Kill(t)
	s.LoadData(t, "")
	s.Restart(t)
	if n := rdb.DBSize(ctx).Val(); n != 0 {
		t.Errorf("after LoadData(\"\"): %d keys, want none", n)
	}
}
