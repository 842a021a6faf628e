package daemon

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/consentd/consentd/client"
	"github.com/consentd/consentd/internal/promscrape"
	"github.com/consentd/consentd/internal/redisproc"
	"github.com/consentd/consentd/internal/redistest"
	pb "github.com/consentd/consentd/proto/consent/v1"
)

// The test contacts: none of them, nor any part of them, may appear in a
// scrape.
const (
	contactGranted = "Zelda.Metrics@Example.org"
	contactUnknown = "quentin.unknown@example.net"
)

var contactParts = []string{"zelda", "metrics@", "example.org", "quentin", "example.net"}

// TestMetrics runs consentd in-process with --metrics-listen, calls it over
// gRPC through the client, and scrapes /metrics over HTTP.
func TestMetrics(t *testing.T) {
	for _, tc := range []struct {
		name  string
		redis bool
	}{
		{name: "embedded"},
		{name: "redis", redis: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.MetricsListen = "127.0.0.1:0"
			if tc.redis {
				r := redistest.Start(t, redisproc.Options{})
				secret := filepath.Join(t.TempDir(), "secret")
				if err := os.WriteFile(secret, bytes.Repeat([]byte("k"), 32), 0o600); err != nil {
					t.Fatal(err)
				}
				cfg.RedisURL, cfg.RedisInit, cfg.SecretFile, cfg.Partitions = "redis://"+r.Addr(), true, secret, 4
			}
			d := startDaemon(t, cfg)
			if d.metrics == "" {
				t.Fatalf("consentd serving logged no metrics address:\n%s", d.logs)
			}
			testMetrics(t, d, tc.redis)
		})
	}
}

func testMetrics(t *testing.T, d *daemon, redis bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := client.New(d.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if redis {
		// Until the feed first catches up on a partition, nothing of it is
		// cached: wait for the lease to say so.
		for deadline := time.Now().Add(10 * time.Second); ; {
			_, got := promscrape.Scrape(t, d.metrics)
			fresh := 0.0
			for p := range 4 {
				fresh += got[`consentd_lease_fresh{partition="`+strconv.Itoa(p)+`"}`]
			}
			if fresh == 4 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the lease of %v of 4 partitions is fresh after 10s", fresh)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	tok, err := c.Grant(ctx, &pb.GrantRequest{Contact: contactGranted, Purposes: []string{"email_marketing"},
		Method: pb.Method_METHOD_CHECKBOX, NoticeVersion: "2026-05", EvidenceRef: "form:1", Actor: "test"})
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		contact, purpose string
		allowed          bool
	}{
		{contactGranted, "email_marketing", true},
		{contactGranted, "email_marketing", true},
		{contactGranted, "sales_outreach", false},
		{contactUnknown, "email_marketing", false},
	}
	for _, ch := range checks {
		dec, err := c.Check(ctx, ch.contact, ch.purpose, client.AtLeastAsFresh(tok))
		if err != nil {
			t.Fatal(err)
		}
		if dec.Allowed != ch.allowed {
			t.Fatalf("Check(%s, %s) = %+v, want allowed %v", ch.contact, ch.purpose, dec, ch.allowed)
		}
	}
	if _, err := c.BatchCheck(ctx, "email_marketing", []string{contactGranted, contactUnknown}); err != nil {
		t.Fatal(err)
	}

	scrape, got := promscrape.Scrape(t, d.metrics)
	check := `{grpc_method="Check",grpc_service="consent.v1.CheckService",grpc_type="unary"}`
	want := map[string]float64{
		`grpc_server_started_total` + check: 4,
		`grpc_server_handled_total{grpc_code="OK",grpc_method="Check",grpc_service="consent.v1.CheckService",grpc_type="unary"}`:      4,
		`grpc_server_handled_total{grpc_code="OK",grpc_method="BatchCheck",grpc_service="consent.v1.CheckService",grpc_type="unary"}`: 1,
		`grpc_server_handled_total{grpc_code="OK",grpc_method="Grant",grpc_service="consent.v1.ConsentService",grpc_type="unary"}`:    1,
		`grpc_server_handling_seconds_count` + check:                              4,
		`consentd_decisions_total{purpose="email_marketing",reason="granted"}`:    3,
		`consentd_decisions_total{purpose="email_marketing",reason="no_consent"}`: 2,
		`consentd_decisions_total{purpose="sales_outreach",reason="no_consent"}`:  1,
		`consentd_decisions_total{purpose="sales_outreach",reason="granted"}`:     0,
		`consentd_decisions_total{purpose="ad_retargeting",reason="erased"}`:      0,
		`consentd_cache_rejected_fills_total`:                                     0,
		`consentd_store_state{state="serving"}`:                                   1,
		`consentd_store_state{state="unreachable"}`:                               0,
		`consentd_store_state{state="settings_drift"}`:                            0,
		`consentd_store_state{state="lost"}`:                                      0,
		`consentd_store_faults_total{kind="unreachable"}`:                         0,
		`consentd_store_faults_total{kind="settings_drift"}`:                      0,
		`consentd_store_faults_total{kind="lost"}`:                                0,
	}
	if !redis {
		want[`consentd_cache_flushes_total`] = 0 // the feed flushes as it first syncs each partition
	} else {
		want[`consentd_feed_gaps_total`] = 0
		want[`consentd_feed_resets_total`] = 0
		want[`consentd_feed_errors_total`] = 0
		want[`consentd_store_audit_inexact_total`] = 0
		want[`consentd_store_audit_skipped_total`] = 0
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
	// At most the six lookups of the calls went through the cache (a read
	// for a token of another partition bypasses it), and the first of the
	// granted contact's was a miss. Whether a repeat is a hit depends on
	// ristretto's asynchronous insert, so the split is checked against the
	// daemon's own count below.
	hits, misses := got["consentd_cache_hits_total"], got["consentd_cache_misses_total"]
	if misses < 1 || hits+misses > 6 {
		t.Errorf("cache hits %v, misses %v: want at least 1 miss and at most 6 lookups", hits, misses)
	}
	if redis {
		if got[`consentd_feed_entries_total`] < 1 {
			t.Errorf("consentd_feed_entries_total = %v, want the grant's entry", got[`consentd_feed_entries_total`])
		}
		for p := range 4 {
			label := `{partition="` + strconv.Itoa(p) + `"}`
			if got[`consentd_lease_fresh`+label] != 1 {
				t.Errorf("consentd_lease_fresh%s = %v, want 1", label, got[`consentd_lease_fresh`+label])
			}
			if age, ok := got[`consentd_feed_fence_age_seconds`+label]; !ok || age < 0 || age > 2 {
				t.Errorf("consentd_feed_fence_age_seconds%s = %v (present %v), want within the 2s lease", label, age, ok)
			}
		}
	} else if strings.Contains(scrape, "consentd_lease_fresh") || strings.Contains(scrape, "consentd_feed_") || strings.Contains(scrape, "consentd_store_audit_") {
		t.Errorf("the embedded store has no feed, lease or audit, but the scrape shows them")
	}
	lower := strings.ToLower(scrape)
	for _, part := range contactParts {
		if strings.Contains(lower, part) {
			t.Errorf("the scrape contains %q, part of a test contact", part)
		}
	}

	// The counters are the cache's own: they match what consentd logs when
	// it stops.
	logs := d.stop(t)
	if !strings.Contains(logs, `"cache_hits":`+ftoa(hits)+`,"cache_misses":`+ftoa(misses)+`,`) {
		t.Errorf("scraped cache hits %v and misses %v, but consentd logged at stop:\n%s", hits, misses, logs)
	}
}

func ftoa(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// daemon is consentd running in-process.
type daemon struct {
	addr, metrics, health string
	logs                  *syncBuffer
	cancel                context.CancelFunc
	done                  chan int
}

// testConfig is what the in-process tests start from: consentd's defaults
// with a free loopback port, a fresh data directory and JSON logs.
func testConfig(t *testing.T) Config {
	c := DefaultConfig()
	c.Listen, c.DataDir, c.LogFormat = "127.0.0.1:0", t.TempDir(), "json"
	return c
}

// startDaemon runs consentd with c (which must log JSON) until the test
// ends, and waits for it to serve.
func startDaemon(t *testing.T, c Config) *daemon {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	d := &daemon{logs: &syncBuffer{}, cancel: cancel, done: make(chan int, 1)}
	go func() { d.done <- Run(ctx, c, d.logs) }()
	t.Cleanup(func() { d.stop(t) })
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		sc := bufio.NewScanner(strings.NewReader(d.logs.String()))
		for sc.Scan() {
			var line struct {
				Msg, Addr, Metrics, Health string
			}
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "consentd serving" {
				d.addr, d.metrics, d.health = line.Addr, line.Metrics, line.Health
				return d
			}
		}
		select {
		case code := <-d.done:
			d.done <- code
			t.Fatalf("consentd exited with %d:\n%s", code, d.logs)
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatalf("consentd did not start serving:\n%s", d.logs)
	return nil
}

// stop ends consentd, checks it exited cleanly, and returns its logs.
func (d *daemon) stop(t *testing.T) string {
	t.Helper()
	d.cancel()
	select {
	case code := <-d.done:
		d.done <- code
		if code != 0 {
			t.Errorf("consentd exited with %d:\n%s", code, d.logs)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("consentd did not stop:\n%s", d.logs)
	}
	return d.logs.String()
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestCacheEvictions: with a cache too small for the contacts asked about,
// consentd_cache_evictions_total counts the records dropped for room, and is
// the cache's own count (what consentd logs when it stops).
func TestCacheEvictions(t *testing.T) {
	cfg := testConfig(t)
	cfg.MetricsListen, cfg.CacheBytes = "127.0.0.1:0", 4096
	d := startDaemon(t, cfg)
	c, err := client.New(d.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// Every unknown contact's empty record is cached, so each Check fills
	// the cache with one more.
	for i := range 300 {
		if _, err := c.Check(ctx, "evicted-"+strconv.Itoa(i)+"@example.org", "email_marketing"); err != nil {
			t.Fatal(err)
		}
	}
	// Ristretto applies fills, and evicts for them, on its own goroutine:
	// wait until the count settles.
	var evicted float64
	for deadline := time.Now().Add(10 * time.Second); ; {
		_, got := promscrape.Scrape(t, d.metrics)
		n, ok := got["consentd_cache_evictions_total"]
		if !ok {
			t.Fatal("no consentd_cache_evictions_total in the scrape")
		}
		if n > 0 && n == evicted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("consentd_cache_evictions_total = %v after 10s, want a settled count above 0", n)
		}
		evicted = n
		time.Sleep(100 * time.Millisecond)
	}
	logs := d.stop(t)
	if !strings.Contains(logs, `"cache_evictions":`+ftoa(evicted)+`}`) && !strings.Contains(logs, `"cache_evictions":`+ftoa(evicted)+`,`) {
		t.Errorf("scraped %v cache evictions, but consentd logged at stop:\n%s", evicted, logs)
	}
}
