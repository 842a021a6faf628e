package metrics_test

import (
	"log/slog"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/consentd/consentd/consent"
	"github.com/consentd/consentd/internal/metrics"
)

// scrape serves reg through Handler and returns its samples by
// name{labels}, leaving out the Go runtime's and the process's.
func scrape(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	metrics.Handler(reg, slog.New(slog.DiscardHandler)).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	out := map[string]float64{}
	for line := range strings.Lines(rec.Body.String()) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") || !strings.HasPrefix(line, "consentd_") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

func nonZero(m map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range m {
		if v != 0 {
			out[k] = v
		}
	}
	return out
}

func TestDecisions(t *testing.T) {
	reg := prometheus.NewRegistry()
	d, err := metrics.NewDecisions(reg, consent.DefaultPurposes())
	if err != nil {
		t.Fatal(err)
	}
	d.Decided("email_marketing", consent.ReasonGranted, 1)
	d.Decided("email_marketing", consent.ReasonGranted, 2)
	d.Decided("ad_retargeting", consent.ReasonWithdrawn, 5)
	d.Decided("not_a_purpose", consent.ReasonGranted, 1) // not counted, and no new series
	d.Decided("email_marketing", consent.Reason(200), 1) // not counted
	got := scrape(t, reg)
	if n := len(consent.DefaultPurposes()) * len(consent.Reasons()); len(got) != n {
		t.Errorf("%d series, want %d: every purpose and reason, made up front", len(got), n)
	}
	want := map[string]float64{
		`consentd_decisions_total{purpose="ad_retargeting",reason="withdrawn"}`: 5,
		`consentd_decisions_total{purpose="email_marketing",reason="granted"}`:  3,
	}
	if diff := cmp.Diff(want, nonZero(got)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestCountersReadAtScrape(t *testing.T) {
	reg := prometheus.NewRegistry()
	var hits, misses, rejected, flushes, evictions, entries, gaps, resets, errs atomic.Uint64
	if err := metrics.RegisterCache(reg, metrics.CacheCounters{Hits: &hits, Misses: &misses, RejectedFills: &rejected, Flushes: &flushes, Evictions: &evictions}); err != nil {
		t.Fatal(err)
	}
	if err := metrics.RegisterFeed(reg, metrics.FeedCounters{Entries: &entries, Gaps: &gaps, Resets: &resets, Errors: &errs}); err != nil {
		t.Fatal(err)
	}
	hits.Add(7)
	misses.Add(3)
	rejected.Add(1)
	flushes.Add(2)
	evictions.Add(5)
	entries.Add(40)
	gaps.Add(1)
	errs.Add(4)
	want := map[string]float64{
		"consentd_cache_hits_total": 7, "consentd_cache_misses_total": 3, "consentd_cache_rejected_fills_total": 1,
		"consentd_cache_flushes_total": 2, "consentd_cache_evictions_total": 5, "consentd_feed_entries_total": 40, "consentd_feed_gaps_total": 1,
		"consentd_feed_resets_total": 0, "consentd_feed_errors_total": 4,
	}
	if diff := cmp.Diff(want, scrape(t, reg)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

type fences map[uint32]time.Duration

func (f fences) FenceAge(p uint32) (time.Duration, bool) {
	age, ok := f[p]
	return age, ok
}

func TestLease(t *testing.T) {
	reg := prometheus.NewRegistry()
	// Partition 0 is fresh, 1 is past the lease, 2 has no fence.
	f := fences{0: 500 * time.Millisecond, 1: 3 * time.Second}
	if err := metrics.RegisterLease(reg, f, 3, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		`consentd_lease_fresh{partition="0"}`:            1,
		`consentd_lease_fresh{partition="1"}`:            0,
		`consentd_lease_fresh{partition="2"}`:            0,
		`consentd_feed_fence_age_seconds{partition="0"}`: 0.5,
		`consentd_feed_fence_age_seconds{partition="1"}`: 3,
	}
	if diff := cmp.Diff(want, scrape(t, reg)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// BenchmarkDecided is the cost Check pays to count its decision.
func BenchmarkDecided(b *testing.B) {
	d, err := metrics.NewDecisions(prometheus.NewRegistry(), consent.DefaultPurposes())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			d.Decided("email_marketing", consent.ReasonGranted, 1)
		}
	})
}
