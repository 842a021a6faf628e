package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/consentd/consentd/bench"
	"github.com/consentd/consentd/client"
	"github.com/consentd/consentd/internal/daemontest"
	"github.com/consentd/consentd/internal/faultproxy"
	"github.com/consentd/consentd/internal/redisproc"
	"github.com/consentd/consentd/internal/redistest"
	pb "github.com/consentd/consentd/proto/consent/v1"
)

// The lease the Redis tests run sidecars with: short, so the tests are.
const lease = 500 * time.Millisecond

// afterLease is long enough for any cached record to have outlived the lease.
const afterLease = lease + 500*time.Millisecond

type sidecar struct {
	*daemontest.Daemon
	check pb.CheckServiceClient
	cons  pb.ConsentServiceClient
	hc    healthpb.HealthClient
}

func sharedSecret(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "consentd.secret")
	if err := os.WriteFile(path, []byte("a secret every sidecar shares, 0123456789"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// startSidecar runs consentd on Redis; store is "--redis=URL" or
// "--redis-cluster=ADDRS".
func startSidecar(t *testing.T, secret, store string, extra ...string) *sidecar {
	t.Helper()
	args := append([]string{"--listen", "127.0.0.1:0", store, "--secret-file", secret, "--lease", lease.String(), "--partitions", "8"}, extra...)
	d := startDaemon(t, args...)
	conn := dial(t, d.Addr)
	return &sidecar{Daemon: d, check: pb.NewCheckServiceClient(conn), cons: pb.NewConsentServiceClient(conn), hc: healthpb.NewHealthClient(conn)}
}

func redisURL(addr string) string { return "--redis=redis://" + addr + "/0" }

func contactN(i int) string { return fmt.Sprintf("enemy%03d@example.com", i) }

func (s *sidecar) grant(t *testing.T, contact string) string {
	t.Helper()
	resp, err := s.cons.Grant(testCtx(t), &pb.GrantRequest{Contact: contact, Purposes: []string{"email_marketing"},
		Method: pb.Method_METHOD_CHECKBOX, RequestId: "grant-" + contact})
	if err != nil {
		t.Fatalf("Grant(%s): %v", contact, err)
	}
	return resp.GetConsistencyToken()
}

func (s *sidecar) withdraw(t *testing.T, contact string) string {
	t.Helper()
	resp, err := s.cons.Withdraw(testCtx(t), &pb.WithdrawRequest{Contact: contact, RequestId: "withdraw-" + contact})
	if err != nil {
		t.Fatalf("Withdraw(%s): %v", contact, err)
	}
	return resp.GetConsistencyToken()
}

// ask checks contact on s with a short deadline; token, when set, is passed
// as at_least_as_fresh.
func (s *sidecar) ask(contact, token string, timeout time.Duration) (pb.Decision, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req := &pb.CheckRequest{Contact: contact, Purpose: "email_marketing"}
	if token != "" {
		req.Consistency = &pb.Consistency{Requirement: &pb.Consistency_AtLeastAsFresh{AtLeastAsFresh: token}}
	}
	resp, err := s.check.Check(ctx, req)
	return resp.GetDecision(), err
}

// neverAllow fails the test if s answers ALLOW for contact. Errors (the store
// cut off) are fine: they are never an allow.
func (s *sidecar) neverAllow(t *testing.T, what, contact, token string) {
	t.Helper()
	d, err := s.ask(contact, token, 700*time.Millisecond)
	if err == nil && d == pb.Decision_DECISION_ALLOW {
		t.Errorf("%s: %s answered ALLOW", what, contact)
	}
	if err != nil {
		if c := status.Code(err); c != codes.Unavailable && c != codes.DeadlineExceeded {
			t.Errorf("%s: %s failed with %v, want UNAVAILABLE or a deadline", what, contact, err)
		}
	}
}

// eventually waits until s answers want for contact.
func (s *sidecar) eventually(t *testing.T, contact string, want pb.Decision) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		d, err := s.ask(contact, "", 2*time.Second)
		if err == nil && d == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %v (%v) after 20s, want %v", contact, d, err, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestNewEnemy: sidecars A and B share one Redis. A withdrawal through A is
// never answered ALLOW by B when B is given A's token, and not after the
// lease without it: with the feed healthy, cut, stalled, Redis restarted,
// and the stream trimmed past B.
func TestNewEnemy(t *testing.T) {
	tests := []struct {
		name  string
		fault func(t *testing.T, srv *redistest.Server, proxy *faultproxy.Proxy)
		heal  func(t *testing.T, srv *redistest.Server, proxy *faultproxy.Proxy)
	}{
		{name: "healthy"},
		{name: "feed connection cut",
			fault: func(t *testing.T, _ *redistest.Server, p *faultproxy.Proxy) { p.Cut() }},
		{name: "feed stalled",
			fault: func(t *testing.T, _ *redistest.Server, p *faultproxy.Proxy) { p.Stall() },
			heal:  func(t *testing.T, _ *redistest.Server, p *faultproxy.Proxy) { p.Resume() }},
		{name: "redis restarted",
			fault: func(t *testing.T, srv *redistest.Server, _ *faultproxy.Proxy) { srv.Kill(t); srv.Restart(t) }},
		{name: "stream trimmed past B",
			fault: func(t *testing.T, _ *redistest.Server, p *faultproxy.Proxy) { p.Stall() },
			heal: func(t *testing.T, srv *redistest.Server, p *faultproxy.Proxy) {
				trimAll(t, srv)
				p.Resume()
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := redistest.Start(t, redisproc.Options{})
			proxy := faultproxy.Start(t, srv.Addr())
			secret := sharedSecret(t)
			a := startSidecar(t, secret, redisURL(srv.Addr()), "--redis-init")
			b := startSidecar(t, secret, redisURL(proxy.Addr()))
			const n = 6
			for i := range n {
				a.grant(t, contactN(i))
			}
			for i := range n {
				b.eventually(t, contactN(i), pb.Decision_DECISION_ALLOW) // cached on B now
			}
			if tt.fault != nil {
				tt.fault(t, srv, proxy)
			}
			tokens := make([]string, n)
			for i := range n {
				tokens[i] = a.withdraw(t, contactN(i))
			}
			for i := range n {
				b.neverAllow(t, "with A's token", contactN(i), tokens[i])
			}
			time.Sleep(afterLease)
			for i := range n {
				b.neverAllow(t, "after the lease", contactN(i), "")
			}
			if tt.heal != nil {
				tt.heal(t, srv, proxy)
			}
			for i := range n {
				b.eventually(t, contactN(i), pb.Decision_DECISION_DENY)
			}
			// Once B's feed is fresh again its cache is trusted again: the
			// answers must stay DENY, not fall back to what was cached.
			time.Sleep(afterLease)
			for i := range n {
				b.neverAllow(t, "after healing", contactN(i), "")
			}
			// And B keeps following A afterwards.
			a.grant(t, "later@example.com")
			b.eventually(t, "later@example.com", pb.Decision_DECISION_ALLOW)
		})
	}
}

// trimAll empties every change stream, as MAXLEN trimming does to a sidecar
// that fell too far behind.
func trimAll(t *testing.T, srv *redistest.Server) {
	t.Helper()
	rdb := srv.Client(t)
	ctx := testCtx(t)
	keys, err := rdb.Keys(ctx, "{*}:f").Result()
	if err != nil || len(keys) == 0 {
		t.Fatalf("no change streams to trim: %v %v", keys, err)
	}
	for _, k := range keys {
		if err := rdb.XTrimMaxLen(ctx, k, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestFailClosed stops Redis under traffic: after the lease, nothing is
// ALLOW; health goes NOT_SERVING; when Redis returns, service recovers
// without a restart.
func TestFailClosed(t *testing.T) {
	srv := redistest.Start(t, redisproc.Options{})
	secret := sharedSecret(t)
	s := startSidecar(t, secret, redisURL(srv.Addr()), "--redis-init")
	const n = 8
	for i := range n {
		s.grant(t, contactN(i))
	}
	var (
		stopped   atomic.Int64 // unix nanos when Redis was killed
		lateAllow atomic.Int64
		calls     atomic.Int64
	)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			for i := w; ctx.Err() == nil; i++ {
				// Judged by when the call was sent: one sent after the lease
				// has run out must not be answered from the cache.
				sent := time.Now().UnixNano()
				d, err := s.ask(contactN(i%n), "", time.Second)
				calls.Add(1)
				if err == nil && d == pb.Decision_DECISION_ALLOW {
					if at := stopped.Load(); at != 0 && sent > at+int64(lease) {
						lateAllow.Add(1)
					}
				}
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	srv.Kill(t)
	stopped.Store(time.Now().UnixNano())
	waitHealth(t, s, healthpb.HealthCheckResponse_NOT_SERVING)
	time.Sleep(afterLease)
	cancel()
	wg.Wait()
	if n := lateAllow.Load(); n > 0 {
		t.Errorf("%d ALLOW answers more than the lease after Redis stopped (of %d calls)", n, calls.Load())
	}
	for i := range n {
		_, err := s.ask(contactN(i), "", time.Second)
		if c := status.Code(err); c != codes.Unavailable && c != codes.DeadlineExceeded {
			t.Errorf("with Redis down, Check = %v, want UNAVAILABLE", err)
		}
	}
	srv.Restart(t)
	waitHealth(t, s, healthpb.HealthCheckResponse_SERVING)
	for i := range n {
		s.eventually(t, contactN(i), pb.Decision_DECISION_ALLOW)
	}
}

func waitHealth(t *testing.T, s *sidecar, want healthpb.HealthCheckResponse_ServingStatus) {
	t.Helper()
	healthWithin(t, s, time.Now(), want, 20*time.Second/3)
}

// healthWithin waits until s's health is want and returns how long after
// since it was first seen so. The bounds are polled with slack: the
// test fails only past three times bound.
func healthWithin(t *testing.T, s *sidecar, since time.Time, want healthpb.HealthCheckResponse_ServingStatus, bound time.Duration) time.Duration {
	t.Helper()
	deadline := since.Add(3 * bound)
	for {
		resp, err := s.hc.Check(testCtx(t), &healthpb.HealthCheckRequest{Service: "consent.v1.CheckService"})
		if err == nil && resp.GetStatus() == want {
			return time.Since(since)
		}
		if time.Now().After(deadline) {
			t.Fatalf("health still %v (%v) %v after %v, want %v", resp.GetStatus(), err, time.Since(since), since.Format("15:04:05.000"), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSidecarKilledMidWrite: a sidecar SIGKILLed while writes are in flight;
// retrying every write with its request id through another sidecar applies
// each exactly once.
func TestSidecarKilledMidWrite(t *testing.T) {
	srv := redistest.Start(t, redisproc.Options{})
	secret := sharedSecret(t)
	a := startSidecar(t, secret, redisURL(srv.Addr()), "--redis-init")
	const n = 40
	var acked atomic.Int64
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if _, err := a.cons.Grant(context.Background(), &pb.GrantRequest{Contact: contactN(i), Purposes: []string{"email_marketing"},
				Method: pb.Method_METHOD_CHECKBOX, RequestId: fmt.Sprint("req-", i)}); err == nil {
				acked.Add(1)
			}
		})
	}
	for acked.Load() < n/4 {
		time.Sleep(time.Millisecond)
	}
	a.Kill()
	wg.Wait()
	t.Logf("%d of %d writes acknowledged before SIGKILL", acked.Load(), n)
	b := startSidecar(t, secret, redisURL(srv.Addr()))
	for i := range n {
		if _, err := b.cons.Grant(testCtx(t), &pb.GrantRequest{Contact: contactN(i), Purposes: []string{"email_marketing"},
			Method: pb.Method_METHOD_CHECKBOX, RequestId: fmt.Sprint("req-", i)}); err != nil {
			t.Fatalf("retry %d: %v", i, err)
		}
		events, err := b.cons.ListEvents(testCtx(t), &pb.ListEventsRequest{Contact: contactN(i)})
		if err != nil {
			t.Fatal(err)
		}
		if got := len(events.GetEvents()); got != 1 {
			t.Errorf("contact %d has %d events after kill and retry, want exactly 1", i, got)
		}
	}
}

// TestCluster: two sidecars on a 3-master Redis Cluster. Withdrawals
// propagate, and moving the slot of a busy partition to another master
// while traffic runs surfaces no error to callers.
func TestCluster(t *testing.T) {
	cluster := redistest.StartCluster(t, 3)
	secret := sharedSecret(t)
	addrs := "--redis-cluster=" + strings.Join(cluster.Addrs(), ",")
	a := startSidecar(t, secret, addrs, "--redis-init")
	b := startSidecar(t, secret, addrs)
	const n = 40
	for i := range n {
		a.grant(t, contactN(i))
	}
	for i := range n {
		b.eventually(t, contactN(i), pb.Decision_DECISION_ALLOW)
	}
	tok := a.withdraw(t, contactN(0))
	b.neverAllow(t, "with A's token", contactN(0), tok)
	b.eventually(t, contactN(0), pb.Decision_DECISION_DENY)

	// Traffic on both sidecars: writes on A, fully consistent reads on B
	// (so they go to Redis, not the cache), while slots move.
	ctx, cancel := context.WithCancel(context.Background())
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		errs   []string
		writes atomic.Int64
	)
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err.Error())
		mu.Unlock()
	}
	wg.Go(func() {
		for i := 0; ctx.Err() == nil; i++ {
			_, err := a.cons.Grant(ctx, &pb.GrantRequest{Contact: contactN(1 + i%(n-1)), Purposes: []string{"sales_outreach"},
				Method: pb.Method_METHOD_BUTTON})
			if err != nil && ctx.Err() == nil {
				fail(err)
			}
			writes.Add(1)
		}
	})
	wg.Go(func() {
		for i := 0; ctx.Err() == nil; i++ {
			_, err := b.check.Check(ctx, &pb.CheckRequest{Contact: contactN(i % n), Purpose: "email_marketing",
				Consistency: &pb.Consistency{Requirement: &pb.Consistency_FullyConsistent{FullyConsistent: true}}})
			if err != nil && ctx.Err() == nil {
				fail(err)
			}
		}
	})
	moved := map[int]bool{}
	for p := range 8 {
		slot := cluster.KeySlot(t, fmt.Sprintf("{%d}", p))
		if moved[slot] {
			continue
		}
		moved[slot] = true
		cluster.MigrateSlot(t, slot, (cluster.OwnerOf(t, slot)+1)%3)
		if len(moved) == 3 {
			break
		}
	}
	time.Sleep(200 * time.Millisecond)
	cancel()
	wg.Wait()
	if len(errs) > 0 {
		sort.Strings(errs)
		t.Errorf("%d errors surfaced to callers while slots moved, first: %s", len(errs), errs[0])
	}
	if writes.Load() == 0 {
		t.Fatal("no writes ran during the resharding")
	}
	t.Logf("%d writes while %d slots moved", writes.Load(), len(moved))
	// Propagation still works after the move.
	tok = a.withdraw(t, contactN(2))
	b.neverAllow(t, "after resharding, with A's token", contactN(2), tok)
	b.eventually(t, contactN(2), pb.Decision_DECISION_DENY)
}

// TestPropagation measures, over real processes, the time from a Withdraw
// acknowledged by A to the first DENY from B (polling B as fast as it
// answers). It reports the distribution; it asserts only that every
// withdrawal arrives.
func TestPropagation(t *testing.T) {
	srv := redistest.Start(t, redisproc.Options{})
	secret := sharedSecret(t)
	var cls []*client.Client
	for i := range 2 {
		var extra []string
		if i == 0 {
			extra = []string{"--redis-init"} // the first one initialises the new store
		}
		cl, err := client.New(startSidecar(t, secret, redisURL(srv.Addr()), extra...).Addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cl.Close() })
		cls = append(cls, cl)
	}
	contacts := make([]string, 300)
	for i := range contacts {
		contacts[i] = fmt.Sprintf("prop%04d@example.com", i)
	}
	// The harness's scenario, on the test's sidecars: it fails on a
	// withdrawal B never denies; the figures are reported, not judged.
	res, err := bench.Propagation(testCtx(t), cls[0], cls[1], contacts, "email_marketing", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors > 0 || res.Count != int64(len(contacts)) {
		t.Fatalf("%d of %d withdrawals not seen by B: %v", res.Errors, res.Count, res.ErrorSamples)
	}
	t.Logf("withdraw on A acknowledged -> first DENY on B, %d withdrawals: p50 %v, p90 %v, p99 %v, max %v",
		res.Count, res.P50(), res.P90(), res.P99(), res.Max())
}
