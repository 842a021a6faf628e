package metrics

import (
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// StoreHealth is what the store metrics read: the daemon's store guard.
type StoreHealth interface {
	// StoreState is the index, in the states given to RegisterStore, of
	// the store's current state.
	StoreState() int
	// StoreFaults is how many times the store has entered state i.
	StoreFaults(i int) uint64
}

// RegisterStore registers consentd_store_state (1 for the state the store
// is in, 0 for the others, by state) and consentd_store_faults_total (entries
// into each state but states[0], the healthy one, by kind).
func RegisterStore(reg prometheus.Registerer, states []string, h StoreHealth) error {
	return reg.Register(&storeCollector{h: h, states: states,
		state: prometheus.NewDesc(namespace+"_store_state",
			"1 for the state the store is in ("+strings.Join(states, ", ")+"), 0 for the others; all but "+states[0]+" are NOT_SERVING.",
			[]string{"state"}, nil),
		faults: prometheus.NewDesc(namespace+"_store_faults_total",
			"Times the store entered a fault state, by kind.",
			[]string{"kind"}, nil),
	})
}

type storeCollector struct {
	h             StoreHealth
	states        []string
	state, faults *prometheus.Desc
}

func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.state
	ch <- c.faults
}

func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	cur := c.h.StoreState()
	for i, name := range c.states {
		v := 0.0
		if i == cur {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(c.state, prometheus.GaugeValue, v, name)
		if i > 0 {
			ch <- prometheus.MustNewConstMetric(c.faults, prometheus.CounterValue, float64(c.h.StoreFaults(i)), name)
		}
	}
}

// AuditCounters are the Redis audit's live counters (store.AuditStats),
// read at scrape time.
type AuditCounters struct {
	Inexact, Skipped *atomic.Uint64
}

// RegisterAudit registers consentd_store_audit_{inexact,skipped}_total.
func RegisterAudit(reg prometheus.Registerer, a AuditCounters) error {
	return registerCounters(reg, "store_audit", []counter{
		{"inexact_total", "Audit rounds of a node whose key count moved with writes in every attempt, judged against bounds (which catch fewer losses).", a.Inexact},
		{"skipped_total", "Audit rounds of a node whose key count was not judged: Cluster slots of the store were moving.", a.Skipped},
	})
}
