// Package metrics defines consentd's Prometheus metrics: gRPC calls (through
// go-grpc-middleware's provider), the cache's and the change feed's counters,
// the freshness lease of each partition, and decisions by purpose and reason.
// There is no global registry: the daemon makes one with NewRegistry, registers
// what it runs, and serves it with Handler. No metric is labelled with
// anything a caller sends but a purpose name from the registry: contacts
// never appear.
package metrics

import (
	"log/slog"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/consentd/consentd/consent"
)

const namespace = "consentd"

// NewRegistry returns an empty registry but for the Go runtime and process
// collectors.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Handler serves reg in the Prometheus exposition formats. Failures to
// gather are logged to log and counted in promhttp_metric_handler_errors_total.
func Handler(reg *prometheus.Registry, log *slog.Logger) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		Registry: reg,
	})
}

// latencyBuckets suit a sidecar whose warm Check takes tens of
// microseconds and whose batches take up to seconds.
var latencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// NewGRPC registers and returns per-RPC metrics (grpc_server_started_total,
// grpc_server_handled_total by code, grpc_server_handling_seconds, stream
// message counts). Use its interceptors outermost, and call its
// InitializeMetrics once services are registered.
func NewGRPC(reg prometheus.Registerer) (*grpcprom.ServerMetrics, error) {
	m := grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram(grpcprom.WithHistogramBuckets(latencyBuckets)))
	if err := reg.Register(m); err != nil {
		return nil, err
	}
	return m, nil
}

// CacheCounters are the cache's live counters (cache.Stats), read at
// scrape time.
type CacheCounters struct {
	Hits, Misses, RejectedFills, Flushes, Evictions *atomic.Uint64
}

// RegisterCache registers consentd_cache_{hits,misses,rejected_fills,flushes,evictions}_total.
func RegisterCache(reg prometheus.Registerer, c CacheCounters) error {
	return registerCounters(reg, "cache", []counter{
		{"hits_total", "Cache lookups answered from memory.", c.Hits},
		{"misses_total", "Cache lookups that read the store.", c.Misses},
		{"rejected_fills_total", "Store reads not cached because an invalidation raced them.", c.RejectedFills},
		{"flushes_total", "Times every cached record was dropped (change feed gap, reset or failover).", c.Flushes},
		{"evictions_total", "Cached records dropped to make room for others (not invalidations): steady growth means --cache-bytes is smaller than the working set.", c.Evictions},
	})
}

// FeedCounters are the Redis change feed's live counters (store.FeedStats),
// read at scrape time.
type FeedCounters struct {
	Entries, Gaps, Resets, Errors *atomic.Uint64
}

// RegisterFeed registers consentd_feed_{entries,gaps,resets,errors}_total.
func RegisterFeed(reg prometheus.Registerer, f FeedCounters) error {
	return registerCounters(reg, "feed", []counter{
		{"entries_total", "Change feed entries applied to the cache.", f.Entries},
		{"gaps_total", "Sequence gaps found in the change feed (each flushes the cache).", f.Gaps},
		{"resets_total", "Change feed restarts after Redis lost data or failed over.", f.Resets},
		{"errors_total", "Failed change feed reads.", f.Errors},
	})
}

type counter struct {
	name, help string
	v          *atomic.Uint64
}

func registerCounters(reg prometheus.Registerer, subsystem string, cs []counter) error {
	for _, c := range cs {
		v := c.v
		err := reg.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: subsystem, Name: c.name, Help: c.help,
		}, func() float64 { return float64(v.Load()) }))
		if err != nil {
			return err
		}
	}
	return nil
}

// Fences is what the lease metrics read: the cache.
type Fences interface {
	// FenceAge is how old partition p's fence is; ok is false when it
	// has none (never fenced, or its feed failed since).
	FenceAge(p uint32) (age time.Duration, ok bool)
}

// RegisterLease registers, per partition, consentd_lease_fresh (1 while
// cached records of the partition may be used: its fence is at most lease
// old) and consentd_feed_fence_age_seconds (absent while the partition has
// no fence).
func RegisterLease(reg prometheus.Registerer, f Fences, partitions uint32, lease time.Duration) error {
	return reg.Register(&leaseCollector{f: f, parts: partitions, lease: lease,
		fresh: prometheus.NewDesc(namespace+"_lease_fresh",
			"1 while the partition's cached records may be used (its change feed caught up within the lease), else 0.",
			[]string{"partition"}, nil),
		age: prometheus.NewDesc(namespace+"_feed_fence_age_seconds",
			"Time since the partition's change feed last caught up: how stale its cached records may be.",
			[]string{"partition"}, nil),
	})
}

type leaseCollector struct {
	f          Fences
	parts      uint32
	lease      time.Duration
	fresh, age *prometheus.Desc
}

func (l *leaseCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- l.fresh
	ch <- l.age
}

func (l *leaseCollector) Collect(ch chan<- prometheus.Metric) {
	for p := range l.parts {
		label := strconv.FormatUint(uint64(p), 10)
		age, ok := l.f.FenceAge(p)
		fresh := 0.0
		if ok && age <= l.lease {
			fresh = 1
		}
		ch <- prometheus.MustNewConstMetric(l.fresh, prometheus.GaugeValue, fresh, label)
		if ok {
			ch <- prometheus.MustNewConstMetric(l.age, prometheus.GaugeValue, age.Seconds(), label)
		}
	}
}

// Decisions counts decisions by purpose and reason in
// consentd_decisions_total. Every (purpose, reason) counter is made up front,
// so counting one is a map read by purpose name and an atomic add: no label
// lookup on the hot path.
type Decisions struct {
	by map[string]*[reasonSlots]prometheus.Counter
}

// reasonSlots bounds consent.Reason values counted.
const reasonSlots = 16

// NewDecisions registers consentd_decisions_total with a counter for each
// of purposes and each reason.
func NewDecisions(reg prometheus.Registerer, purposes []consent.Purpose) (*Decisions, error) {
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "decisions_total",
		Help: "Decisions answered (Check, BatchCheck, FilterAudience) by purpose and reason; reason granted is an ALLOW.",
	}, []string{"purpose", "reason"})
	if err := reg.Register(vec); err != nil {
		return nil, err
	}
	d := &Decisions{by: make(map[string]*[reasonSlots]prometheus.Counter, len(purposes))}
	for _, p := range purposes {
		cs := new([reasonSlots]prometheus.Counter)
		for _, r := range consent.Reasons() {
			if int(r) < reasonSlots {
				cs[r] = vec.WithLabelValues(p.Name, r.String())
			}
		}
		d.by[p.Name] = cs
	}
	return d, nil
}

// Decided counts n decisions for purpose with reason r. An unknown purpose
// or reason is not counted.
func (d *Decisions) Decided(purpose string, r consent.Reason, n uint64) {
	cs := d.by[purpose]
	if cs == nil || int(r) >= reasonSlots || cs[r] == nil {
		return
	}
	if n == 1 {
		cs[r].Inc()
		return
	}
	cs[r].Add(float64(n))
}
