package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/consentd/consentd/internal/daemontest"
	"github.com/consentd/consentd/internal/redisproc"
	"github.com/consentd/consentd/internal/redistest"
	pb "github.com/consentd/consentd/proto/consent/v1"
)

// startSentinel runs a redis-server in sentinel mode watching master as
// "mymaster"; it is killed by PID when the test ends.
func startSentinel(t *testing.T, master *redistest.Server) string {
	t.Helper()
	dir := t.TempDir()
	port := freeLoopbackPort(t)
	conf := filepath.Join(dir, "sentinel.conf")
	body := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nsentinel monitor mymaster 127.0.0.1 %d 1\n"+
		"sentinel down-after-milliseconds mymaster 1000\nsentinel failover-timeout mymaster 5000\n", port, dir, master.Port)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("redis-server", conf, "--sentinel")
	cmd.Stdout, cmd.Stderr = nil, nil
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting redis sentinel: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := "127.0.0.1:" + strconv.Itoa(port)
	s := redis.NewSentinelClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { s.Close() })
	deadline := time.Now().Add(20 * time.Second)
	for {
		if got, err := s.GetMasterAddrByName(context.Background(), "mymaster").Result(); err == nil && len(got) == 2 {
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatal("sentinel did not start watching the master")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestSentinelFailover: two sidecars find the master through Sentinel. After
// a failover to the replica, writes go on, the other sidecar sees them, and
// nothing withdrawn is allowed after the lease.
//
// The sidecars run with --redis-wait-replicas 1. Without it this test shows
// Redis losing an acknowledged write: right after the promotion a client can
// still reach the old master, which accepts the withdrawal and then drops it
// when it is turned into a replica of the new one.
func TestSentinelFailover(t *testing.T) {
	master := redistest.Start(t, redisproc.Options{})
	replica := redistest.Start(t, redisproc.Options{Config: []string{"replicaof 127.0.0.1 " + strconv.Itoa(master.Port)}})
	sentinel := startSentinel(t, master)
	secret := sharedSecret(t)
	store := "--redis-sentinel=mymaster@" + sentinel
	a := startSidecar(t, secret, store, "--redis-init", "--redis-wait-replicas", "1")
	b := startSidecar(t, secret, store, "--redis-wait-replicas", "1")
	waitReplicated(t, master)
	a.grant(t, "sentinel@example.com")
	b.eventually(t, "sentinel@example.com", pb.Decision_DECISION_ALLOW)

	s := redis.NewSentinelClient(&redis.Options{Addr: sentinel})
	defer s.Close()
	if err := s.Failover(context.Background(), "mymaster").Err(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, err := s.GetMasterAddrByName(context.Background(), "mymaster").Result()
		if err == nil && len(got) == 2 && got[1] == strconv.Itoa(replica.Port) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no failover to the replica: %v %v", got, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Writes reach the new master (retrying while clients rediscover it).
	var tok string
	for {
		resp, err := a.cons.Withdraw(testCtx(t), &pb.WithdrawRequest{Contact: "sentinel@example.com", RequestId: "after-failover"})
		if err == nil {
			tok = resp.GetConsistencyToken()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("withdraw after failover: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.neverAllow(t, "after failover, with A's token", "sentinel@example.com", tok)
	time.Sleep(afterLease)
	b.neverAllow(t, "after failover and the lease", "sentinel@example.com", "")
	if t.Failed() {
		t.FailNow() // the sidecars' logs are reported as the test ends
	}
	b.eventually(t, "sentinel@example.com", pb.Decision_DECISION_DENY)
}

func waitReplicated(t *testing.T, master *redistest.Server) {
	t.Helper()
	rdb := master.Client(t)
	if n, err := rdb.Wait(context.Background(), 1, 10*time.Second).Result(); err != nil || n < 1 {
		t.Fatalf("replica did not catch up: %d %v", n, err)
	}
}

// TestRedisPassword: the password comes from the environment, never the
// command line; a wrong one keeps the sidecar from starting.
func TestRedisPassword(t *testing.T) {
	srv := redistest.Start(t, redisproc.Options{})
	// Set after start: the helper's own readiness probe does not log in.
	if err := srv.Client(t).ConfigSet(context.Background(), "requirepass", "s3cret-pass").Err(); err != nil {
		t.Fatal(err)
	}
	secret := sharedSecret(t)
	t.Setenv("CONSENTD_REDIS_PASSWORD", "s3cret-pass")
	s := startSidecar(t, secret, redisURL(srv.Addr()), "--redis-init")
	s.grant(t, "pw@example.com")
	s.eventually(t, "pw@example.com", pb.Decision_DECISION_ALLOW)

	t.Setenv("CONSENTD_REDIS_PASSWORD", "wrong")
	cmd := daemontest.Command(t, "--listen", "127.0.0.1:0", redisURL(srv.Addr()), "--secret-file", secret)
	out, _ := cmd.CombinedOutput()
	if cmd.ProcessState.ExitCode() != 1 || !containsAny(string(out), "WRONGPASS", "invalid password") {
		t.Errorf("wrong password: exit %d, %s", cmd.ProcessState.ExitCode(), out)
	}
}

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
