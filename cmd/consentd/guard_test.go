package main

import (
	"bufio"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/consentd/consentd/internal/daemontest"
	"github.com/consentd/consentd/internal/faultproxy"
	"github.com/consentd/consentd/internal/promscrape"
	"github.com/consentd/consentd/internal/redisproc"
	"github.com/consentd/consentd/internal/redistest"
	pb "github.com/consentd/consentd/proto/consent/v1"
)

const (
	notServing = healthpb.HealthCheckResponse_NOT_SERVING
	serving    = healthpb.HealthCheckResponse_SERVING
)

// logLine is one record of consentd's JSON log.
type logLine struct {
	Level, Msg, Error string
}

// logLines returns the records of d's log at level.
func logLines(t *testing.T, d *daemontest.Daemon, level string) []logLine {
	t.Helper()
	var out []logLine
	sc := bufio.NewScanner(strings.NewReader(d.Logs()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l logLine
		if json.Unmarshal(sc.Bytes(), &l) == nil && l.Level == level {
			out = append(out, l)
		}
	}
	return out
}

// wantUnavailable fails the test unless err is UNAVAILABLE and its message
// says each of says.
func wantUnavailable(t *testing.T, what string, err error, says ...string) {
	t.Helper()
	if status.Code(err) != codes.Unavailable {
		t.Errorf("%s: %v, want UNAVAILABLE", what, err)
		return
	}
	for _, s := range says {
		if !strings.Contains(status.Convert(err).Message(), s) {
			t.Errorf("%s: %q does not say %q", what, status.Convert(err).Message(), s)
		}
	}
}

// TestStoreWiped: FLUSHALL under a running sidecar whose cache holds a
// granted contact: of the standalone Redis, and of one master of a Cluster
// (a node replaced by an empty one). Within a second health is NOT_SERVING;
// that contact's Check is UNAVAILABLE, never the cached ALLOW; a write is
// refused saying the store was wiped or replaced, and writes nothing; one
// ERROR line says so. A restart refuses the store, saying what to do; once
// the operator decides the store is new (--redis-init on an empty Redis),
// it serves.
func TestStoreWiped(t *testing.T) {
	for _, tc := range []struct {
		name  string
		start func(t *testing.T) (store string, nodes []*redistest.Server, wiped int)
		says  []string // what the restart without --redis-init says
	}{
		{name: "standalone", start: func(t *testing.T) (string, []*redistest.Server, int) {
			srv := redistest.Start(t, redisproc.Options{})
			return redisURL(srv.Addr()), []*redistest.Server{srv}, 0
		}, says: []string{"--redis-init", "restore"}},
		{name: "cluster master", start: func(t *testing.T) (string, []*redistest.Server, int) {
			c := redistest.StartCluster(t, 3)
			// The master of partition 0's keys: sure to hold some.
			return "--redis-cluster=" + strings.Join(c.Addrs(), ","), c.Nodes, c.OwnerOf(t, c.KeySlot(t, "{0}"))
		}, says: []string{"restore"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store, nodes, wiped := tc.start(t)
			node := nodes[wiped].Client(t)
			secret := sharedSecret(t)
			s := startSidecar(t, secret, store, "--redis-init", "--lease", "30s", "--metrics-listen", "127.0.0.1:0")
			s.grant(t, "cached@example.com")
			warm(t, s, "cached@example.com") // and the lease is long

			if err := node.FlushAll(context.Background()).Err(); err != nil {
				t.Fatal(err)
			}
			t.Logf("NOT_SERVING %v after FLUSHALL", healthWithin(t, s, time.Now(), notServing, time.Second))

			d, err := s.ask("cached@example.com", "", 5*time.Second)
			if err == nil {
				t.Errorf("Check of the cached contact after FLUSHALL: %v, want UNAVAILABLE", d)
			}
			wantUnavailable(t, "Check after FLUSHALL", err, "wiped or replaced")
			_, err = s.cons.Grant(testCtx(t), &pb.GrantRequest{Contact: "new@example.com", Purposes: []string{"email_marketing"},
				Method: pb.Method_METHOD_CHECKBOX, RequestId: "after-flush"})
			wantUnavailable(t, "Grant after FLUSHALL", err, "wiped or replaced", "--redis-init")
			_, err = s.cons.Withdraw(testCtx(t), &pb.WithdrawRequest{Contact: "cached@example.com", RequestId: "withdraw-after-flush"})
			wantUnavailable(t, "Withdraw after FLUSHALL", err, "wiped or replaced")

			// Several identity checks later: still nothing written, still
			// one line.
			time.Sleep(2 * time.Second)
			if n, err := node.DBSize(context.Background()).Result(); err != nil || n != 0 {
				t.Errorf("after FLUSHALL and refused writes, DBSIZE = %d, %v; want 0", n, err)
			}
			errs := logLines(t, s.Daemon, "ERROR")
			if len(errs) != 1 || !strings.HasPrefix(errs[0].Msg, "store lost") {
				t.Errorf("ERROR lines after FLUSHALL: %+v, want exactly one, store lost", errs)
			}
			if code := s.Stop(t); code != 0 {
				t.Errorf("consentd exited %d after SIGTERM, want 0", code)
			}

			// The operator restarts it as before: the store is refused,
			// before consentd listens, with what to do.
			cmd := daemontest.Command(t, "--listen", "127.0.0.1:0", store, "--secret-file", secret, "--partitions", "8")
			out, _ := cmd.CombinedOutput()
			if code := cmd.ProcessState.ExitCode(); code != 1 {
				t.Errorf("restart on the wiped Redis without --redis-init: exit %d, want 1:\n%s", code, out)
			}
			for _, say := range tc.says {
				if !strings.Contains(string(out), say) {
					t.Errorf("restart on the wiped Redis without --redis-init does not say %q:\n%s", say, out)
				}
			}
			if strings.Contains(string(out), "consentd serving") {
				t.Errorf("restart on the wiped Redis without --redis-init served:\n%s", out)
			}

			// The operator decides the store is new: empty, then initialised.
			for _, n := range nodes {
				if err := n.Client(t).FlushAll(context.Background()).Err(); err != nil {
					t.Fatal(err)
				}
			}
			s = startSidecar(t, secret, store, "--redis-init")
			waitHealth(t, s, serving)
			s.grant(t, "fresh@example.com")
			s.eventually(t, "fresh@example.com", pb.Decision_DECISION_ALLOW)
			s.eventually(t, "cached@example.com", pb.Decision_DECISION_DENY) // gone with the data: no consent
		})
	}
}

// TestStoreSettingsDrift: eviction turned on at runtime. Within 5 s health
// is NOT_SERVING, one ERROR line names the setting and the node, Checks
// (cached ones too) and writes are refused, the metrics show it, and no
// consentd starts on that Redis; set back, consentd serves again on its
// own.
func TestStoreSettingsDrift(t *testing.T) {
	srv := redistest.Start(t, redisproc.Options{})
	rdb := srv.Client(t)
	secret := sharedSecret(t)
	s := startSidecar(t, secret, redisURL(srv.Addr()), "--redis-init", "--lease", "30s", "--metrics-listen", "127.0.0.1:0",
		"--health-listen", "127.0.0.1:0")
	probe := healthpb.NewHealthClient(dial(t, s.Health))
	s.grant(t, "cached@example.com")
	warm(t, s, "cached@example.com")

	if err := rdb.ConfigSet(context.Background(), "maxmemory-policy", "allkeys-lru").Err(); err != nil {
		t.Fatal(err)
	}
	changed := time.Now()
	took := healthWithin(t, s, changed, notServing, 5*time.Second)
	t.Logf("NOT_SERVING %v after CONFIG SET maxmemory-policy allkeys-lru", took)

	if resp, err := probe.Check(testCtx(t), &healthpb.HealthCheckRequest{}); err != nil || resp.GetStatus() != notServing {
		t.Errorf("--health-listen during drift: %v, %v; want NOT_SERVING", resp.GetStatus(), err)
	}
	_, err := s.ask("cached@example.com", "", 5*time.Second)
	wantUnavailable(t, "Check of a cached contact during drift", err, "maxmemory-policy", srv.Addr())
	_, err = s.cons.Grant(testCtx(t), &pb.GrantRequest{Contact: "new@example.com", Purposes: []string{"email_marketing"},
		Method: pb.Method_METHOD_CHECKBOX, RequestId: "during-drift"})
	wantUnavailable(t, "Grant during drift", err, "maxmemory-policy")
	errs := logLines(t, s.Daemon, "ERROR")
	if len(errs) != 1 || !strings.Contains(errs[0].Error, "maxmemory-policy") || !strings.Contains(errs[0].Error, srv.Addr()) {
		t.Errorf("ERROR lines during drift: %+v, want one naming maxmemory-policy and %s", errs, srv.Addr())
	}
	metrics, _ := promscrape.Scrape(t, s.Metrics)
	for _, want := range []string{`consentd_store_state{state="settings_drift"} 1`, `consentd_store_faults_total{kind="settings_drift"} 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics during drift lack %s", want)
		}
	}

	// Nor does a consentd start on it.
	cmd := daemontest.Command(t, "--listen", "127.0.0.1:0", redisURL(srv.Addr()), "--secret-file", secret, "--partitions", "8")
	if out, _ := cmd.CombinedOutput(); cmd.ProcessState.ExitCode() != 1 || !strings.Contains(string(out), "maxmemory-policy") ||
		strings.Contains(string(out), "consentd serving") {
		t.Errorf("start during drift: exit %d, want 1 naming maxmemory-policy before serving:\n%s", cmd.ProcessState.ExitCode(), out)
	}

	if err := rdb.ConfigSet(context.Background(), "maxmemory-policy", "noeviction").Err(); err != nil {
		t.Fatal(err)
	}
	took = healthWithin(t, s, time.Now(), serving, 5*time.Second)
	t.Logf("SERVING %v after CONFIG SET maxmemory-policy noeviction", took)
	s.eventually(t, "cached@example.com", pb.Decision_DECISION_ALLOW)
	s.grant(t, "new@example.com")
	if metrics, _ := promscrape.Scrape(t, s.Metrics); !strings.Contains(metrics, `consentd_store_state{state="serving"} 1`) {
		t.Error(`metrics after recovery lack consentd_store_state{state="serving"} 1`)
	}
}

// TestStoreRestartedWithDrift: Redis stopped and started again with
// maxmemory-policy allkeys-lru in its redis.conf. The store answers pings
// again at once, but health never shows SERVING between the restart and
// the drift being found: a store that comes back is checked before it is
// served (issue 15: the settings are checked on every reconnect).
func TestStoreRestartedWithDrift(t *testing.T) {
	srv := redistest.Start(t, redisproc.Options{})
	s := startSidecar(t, sharedSecret(t), redisURL(srv.Addr()), "--redis-init")
	s.grant(t, "before@example.com")

	// Health as seen every 20 ms, from before the stop until the drift is
	// found.
	type sample struct {
		at     time.Time
		status healthpb.HealthCheckResponse_ServingStatus
	}
	var samples []sample
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			resp, err := s.hc.Check(testCtx(t), &healthpb.HealthCheckRequest{Service: "consent.v1.CheckService"})
			if err == nil {
				samples = append(samples, sample{time.Now(), resp.GetStatus()})
			}
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	})
	stopPolling := sync.OnceFunc(func() { close(done); wg.Wait() })
	t.Cleanup(stopPolling)

	srv.Stop(t)
	stopped := time.Now()
	t.Logf("NOT_SERVING %v after Redis stopped", healthWithin(t, s, stopped, notServing, time.Second))
	srv.Reconfigure(t, "maxmemory-policy allkeys-lru")
	srv.Restart(t)
	restarted := time.Now()
	var found time.Duration
	for deadline := restarted.Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if errs := logLines(t, s.Daemon, "ERROR"); len(errs) > 0 && strings.Contains(errs[0].Error, "maxmemory-policy") {
			found = time.Since(restarted)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no ERROR naming maxmemory-policy 15s after the restart; logs:\n%s", s.Logs())
		}
	}
	time.Sleep(100 * time.Millisecond) // a few samples past the drift
	stopPolling()
	t.Logf("drift found %v after the restart (%d health samples)", found, len(samples))

	var downSeen bool
	for _, smp := range samples {
		if smp.at.Before(stopped) {
			continue
		}
		if smp.status == notServing {
			downSeen = true
		} else if downSeen {
			t.Errorf("health %v at %v after the restart, before the drift was found (%v): a store that came back was served unchecked",
				smp.status, smp.at.Sub(restarted), found)
		}
	}
	if !downSeen {
		t.Errorf("health never NOT_SERVING after Redis stopped: %d samples", len(samples))
	}
	_, err := s.ask("before@example.com", "", 5*time.Second)
	wantUnavailable(t, "Check after the restart with drift", err, "maxmemory-policy", srv.Addr())
}

// warm leaves contact's record in s's cache: it asks until an answer comes
// from the cache (consentd_cache_hits_total moves; s needs
// --metrics-listen). The first answers may not: the feed's report of the
// contact's own write drops what a read cached before it, and the cache
// admits a record asynchronously.
func warm(t *testing.T, s *sidecar, contact string) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; {
		before := cacheHits(t, s)
		d, err := s.ask(contact, "", 2*time.Second)
		if err == nil && d == pb.Decision_DECISION_ALLOW && cacheHits(t, s) > before {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not answered ALLOW from the cache after 20s (last %v, %v)", contact, d, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func cacheHits(t *testing.T, s *sidecar) float64 {
	t.Helper()
	_, samples := promscrape.Scrape(t, s.Metrics)
	n, ok := samples["consentd_cache_hits_total"]
	if !ok {
		t.Fatal("no consentd_cache_hits_total in the metrics")
	}
	return n
}

// stopRedis stops srv with SIGSTOP, a hung Redis: the kernel still accepts
// connections and takes requests, nothing answers. It is continued in
// t.Cleanup, before redistest kills it, whether or not the test failed.
func stopRedis(t *testing.T, srv *redistest.Server) (cont func()) {
	t.Helper()
	pid := srv.PID()
	cont = func() { syscall.Kill(pid, syscall.SIGCONT) }
	t.Cleanup(cont)
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	return cont
}

// TestStoreHung: redis-server stopped by SIGSTOP. Within a second health
// is NOT_SERVING; a Check the cache cannot answer is UNAVAILABLE within the
// read timeout, one it can (within the lease) still answers; a write is
// UNAVAILABLE within the write timeout. Continued, Redis is served again
// without a restart.
func TestStoreHung(t *testing.T) {
	const readTimeout, writeTimeout = 200 * time.Millisecond, 2 * time.Second // the defaults
	srv := redistest.Start(t, redisproc.Options{})
	s := startSidecar(t, sharedSecret(t), redisURL(srv.Addr()), "--redis-init", "--lease", "30s", "--metrics-listen", "127.0.0.1:0")
	s.grant(t, "warm@example.com")
	s.grant(t, "cold@example.com")
	warm(t, s, "warm@example.com")

	cont := stopRedis(t, srv)
	stopped := time.Now()
	if d, err := s.ask("warm@example.com", "", 5*time.Second); err != nil || d != pb.Decision_DECISION_ALLOW {
		t.Errorf("warm Check right after SIGSTOP: %v, %v; want ALLOW from the cache", d, err)
	}
	t.Logf("NOT_SERVING %v after SIGSTOP", healthWithin(t, s, stopped, notServing, time.Second))

	start := time.Now()
	_, err := s.ask("cold@example.com", "", 30*time.Second)
	took := time.Since(start)
	t.Logf("cold Check: %v after %v", status.Code(err), took)
	wantUnavailable(t, "cold Check of a hung Redis", err, "-store-read-timeout 200ms")
	if took > 10*readTimeout {
		t.Errorf("cold Check of a hung Redis took %v, want about the read timeout (%v)", took, readTimeout)
	}

	start = time.Now()
	_, err = s.cons.Grant(testCtx(t), &pb.GrantRequest{Contact: "new@example.com", Purposes: []string{"email_marketing"},
		Method: pb.Method_METHOD_CHECKBOX, RequestId: "while-hung"})
	took = time.Since(start)
	t.Logf("Grant: %v after %v", status.Code(err), took)
	wantUnavailable(t, "Grant to a hung Redis", err, "-store-write-timeout 2s", "same request_id")
	if took > 3*writeTimeout {
		t.Errorf("Grant to a hung Redis took %v, want about the write timeout (%v)", took, writeTimeout)
	}
	if d, err := s.ask("warm@example.com", "", 5*time.Second); err != nil || d != pb.Decision_DECISION_ALLOW {
		t.Errorf("warm Check %v after SIGSTOP, within the lease: %v, %v; want ALLOW from the cache", time.Since(stopped), d, err)
	}

	cont()
	t.Logf("SERVING %v after SIGCONT", healthWithin(t, s, time.Now(), serving, 3*time.Second))
	// The retry, with the same request id, is applied once, whether or not
	// the first try was.
	if _, err := s.cons.Grant(testCtx(t), &pb.GrantRequest{Contact: "new@example.com", Purposes: []string{"email_marketing"},
		Method: pb.Method_METHOD_CHECKBOX, RequestId: "while-hung"}); err != nil {
		t.Fatalf("Grant retried after SIGCONT: %v", err)
	}
	s.eventually(t, "new@example.com", pb.Decision_DECISION_ALLOW)
	s.eventually(t, "cold@example.com", pb.Decision_DECISION_ALLOW)
}

// TestNoStoreCallOutlivesItsDeadline: with every byte to and from Redis
// held (a stalled network), each RPC that reaches the store answers
// UNAVAILABLE, naming the timeout, within its store timeout (here set to
// other than the defaults); health is NOT_SERVING; when traffic flows
// again everything answers.
func TestNoStoreCallOutlivesItsDeadline(t *testing.T) {
	const readTimeout, writeTimeout = 300 * time.Millisecond, time.Second
	srv := redistest.Start(t, redisproc.Options{})
	proxy := faultproxy.Start(t, srv.Addr())
	s := startSidecar(t, sharedSecret(t), redisURL(proxy.Addr()), "--redis-init",
		"--store-read-timeout", readTimeout.String(), "--store-write-timeout", writeTimeout.String())
	s.grant(t, "known@example.com")
	check := func(ctx context.Context) error {
		_, err := s.check.Check(ctx, &pb.CheckRequest{Contact: "known@example.com", Purpose: "email_marketing"})
		return err
	}
	calls := []struct {
		name    string
		timeout time.Duration
		says    string // the flag the message names; "" when the store's socket timeout ends the call
		call    func(ctx context.Context) error
	}{
		{"Check", readTimeout, "-store-read-timeout 300ms", check},
		{"BatchCheck", readTimeout, "-store-read-timeout 300ms", func(ctx context.Context) error {
			_, err := s.check.BatchCheck(ctx, &pb.BatchCheckRequest{Contacts: []string{"known@example.com", "b@example.com"}, Purpose: "email_marketing"})
			return err
		}},
		{"FilterAudience", readTimeout, "-store-read-timeout 300ms", func(ctx context.Context) error {
			stream, err := s.check.FilterAudience(ctx)
			if err != nil {
				return err
			}
			if err := stream.Send(&pb.FilterAudienceRequest{Purpose: "email_marketing", Contacts: []string{"known@example.com"}}); err != nil {
				return err
			}
			_, err = stream.Recv()
			return err
		}},
		{"GetContact", readTimeout, "-store-read-timeout 300ms", func(ctx context.Context) error {
			_, err := s.cons.GetContact(ctx, &pb.GetContactRequest{Contact: "known@example.com"})
			return err
		}},
		{"ListEvents", writeTimeout, "-store-write-timeout 1s", func(ctx context.Context) error {
			_, err := s.cons.ListEvents(ctx, &pb.ListEventsRequest{Contact: "known@example.com"})
			return err
		}},
		{"Grant", writeTimeout, "-store-write-timeout 1s", func(ctx context.Context) error {
			_, err := s.cons.Grant(ctx, &pb.GrantRequest{Contact: "g@example.com", Purposes: []string{"email_marketing"},
				Method: pb.Method_METHOD_CHECKBOX, RequestId: "stalled-grant"})
			return err
		}},
		{"Withdraw", writeTimeout, "-store-write-timeout 1s", func(ctx context.Context) error {
			_, err := s.cons.Withdraw(ctx, &pb.WithdrawRequest{Contact: "known@example.com", RequestId: "stalled-withdraw"})
			return err
		}},
		{"Erase", writeTimeout, "-store-write-timeout 1s", func(ctx context.Context) error {
			_, err := s.cons.Erase(ctx, &pb.EraseRequest{Contact: "e@example.com", RequestId: "stalled-erase"})
			return err
		}},
		{"WriteBatch", writeTimeout, "-store-write-timeout 1s", func(ctx context.Context) error {
			_, err := s.cons.WriteBatch(ctx, &pb.WriteBatchRequest{Writes: []*pb.BatchWrite{{Write: &pb.BatchWrite_Withdraw{
				Withdraw: &pb.WithdrawRequest{Contact: "w@example.com", RequestId: "stalled-batch"}}}}})
			return err
		}},
		// A walk of the whole store has no deadline but its caller's; each
		// of its round trips has the socket timeout, the longer of the two.
		{"VerifyHistory", writeTimeout, "", func(ctx context.Context) error {
			_, err := s.cons.VerifyHistory(ctx, &pb.VerifyHistoryRequest{})
			return err
		}},
	}

	proxy.Stall()
	stalled := time.Now()
	t.Logf("NOT_SERVING %v after the stall", healthWithin(t, s, stalled, notServing, time.Second))
	for _, c := range calls {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		start := time.Now()
		err := c.call(ctx)
		took := time.Since(start)
		cancel()
		t.Logf("%s: %v after %v", c.name, status.Code(err), took)
		wantUnavailable(t, c.name+" through a stalled network", err, c.says)
		if took > 3*c.timeout+time.Second {
			t.Errorf("%s through a stalled network took %v, want about %v", c.name, took, c.timeout)
		}
	}

	proxy.Resume()
	t.Logf("SERVING %v after the network healed", healthWithin(t, s, time.Now(), serving, 3*time.Second))
	for _, c := range calls {
		if err := c.call(testCtx(t)); err != nil {
			t.Errorf("%s after the network healed: %v", c.name, err)
		}
	}
}
