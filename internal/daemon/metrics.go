package daemon

import (
	"log/slog"
	"net/http"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/consentd/consentd/consent"
	"github.com/consentd/consentd/internal/metrics"
)

// daemonMetrics is the registry of one consentd run (--metrics-listen) and
// what feeds it. A nil *daemonMetrics is metrics turned off.
type daemonMetrics struct {
	reg       *prometheus.Registry
	grpc      *grpcprom.ServerMetrics
	decisions *metrics.Decisions
}

// newMetrics registers everything consentd measures on a registry of its own.
func newMetrics(c Config, st *stack, purposes *consent.Registry) (*daemonMetrics, error) {
	m := &daemonMetrics{reg: metrics.NewRegistry()}
	var err error
	if m.grpc, err = metrics.NewGRPC(m.reg); err != nil {
		return nil, err
	}
	if m.decisions, err = metrics.NewDecisions(m.reg, purposes.All()); err != nil {
		return nil, err
	}
	cs := st.records.Stats()
	if err := metrics.RegisterCache(m.reg, metrics.CacheCounters{
		Hits: &cs.Hits, Misses: &cs.Misses, RejectedFills: &cs.RejectedFills, Flushes: &cs.Flushes,
		Evictions: &cs.Evictions}); err != nil {
		return nil, err
	}
	if st.feed != nil {
		fs := st.feed.Stats()
		if err := metrics.RegisterFeed(m.reg, metrics.FeedCounters{
			Entries: &fs.Entries, Gaps: &fs.Gaps, Resets: &fs.Resets, Errors: &fs.Errors}); err != nil {
			return nil, err
		}
		if err := metrics.RegisterLease(m.reg, st.records, uint32(c.Partitions), c.Lease); err != nil {
			return nil, err
		}
	}
	if st.audit != nil {
		if err := metrics.RegisterAudit(m.reg, metrics.AuditCounters{Inexact: &st.audit.Inexact, Skipped: &st.audit.Skipped}); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// serverOptions puts the RPC metrics outermost, so they see the code of a
// call whose handler panicked.
func (m *daemonMetrics) serverOptions() []grpc.ServerOption {
	if m == nil {
		return nil
	}
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(m.grpc.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(m.grpc.StreamServerInterceptor()),
	}
}

// initialize reports every method of srv with zero counts before its first
// call.
func (m *daemonMetrics) initialize(srv *grpc.Server) {
	if m != nil {
		m.grpc.InitializeMetrics(srv)
	}
}

func (m *daemonMetrics) handler(log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics.Handler(m.reg, log))
	return mux
}

// watch reports the guard's store state and faults.
func (m *daemonMetrics) watch(g *guard) error {
	if m == nil {
		return nil
	}
	return metrics.RegisterStore(m.reg, storeStateNames[:], g)
}
