package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/consentd/consentd/consent"
	"github.com/consentd/consentd/store"
)

// TestGuardStates drives the guard's state machine with the outcomes its
// checks can have: each step is one check's result, then the state, the
// gate and the health status it must lead to, and the log line (level and
// message start) of a transition, "" when the step changes nothing. The
// store has all three checks (Redis).
func TestGuardStates(t *testing.T) {
	var (
		down     = fmt.Errorf("%w: dial tcp: i/o timeout", consent.ErrUnavailable)
		settings = fmt.Errorf("store: redis 127.0.0.1:7000: maxmemory-policy allkeys-lru: %w", store.ErrSettings)
		lost     = fmt.Errorf("store: redis: consentd:id is missing: %w", store.ErrStoreLost)
	)
	type step struct {
		check   string // ping, identity, audit; "stale audit": one that began before the latest outage
		err     error
		want    storeState
		wantLog string // "LEVEL message start" of the transition, "" for none
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{name: "unreachable and back once identity and audit pass", steps: []step{
			{"ping", nil, storeServing, ""},
			{"ping", down, storeUnreachable, "WARN store unreachable"},
			{"ping", down, storeUnreachable, ""},
			{"ping", nil, storeUnreachable, ""},
			{"identity", nil, storeUnreachable, ""},
			{"ping", nil, storeUnreachable, ""},
			{"audit", nil, storeServing, "INFO store answers again"},
		}},
		{name: "back: audit first, then identity", steps: []step{
			{"ping", down, storeUnreachable, "WARN store unreachable"},
			{"ping", nil, storeUnreachable, ""},
			{"audit", nil, storeUnreachable, ""},
			{"identity", nil, storeServing, "INFO store answers again"},
		}},
		{name: "an audit begun before the outage vouches for nothing", steps: []step{
			{"ping", down, storeUnreachable, "WARN store unreachable"},
			{"ping", nil, storeUnreachable, ""},
			{"identity", nil, storeUnreachable, ""},
			{"stale audit", nil, storeUnreachable, ""},
			{"audit", nil, storeServing, "INFO store answers again"},
		}},
		{name: "back with drift", steps: []step{
			{"ping", down, storeUnreachable, "WARN store unreachable"},
			{"ping", nil, storeUnreachable, ""},
			{"identity", nil, storeUnreachable, ""},
			{"audit", settings, storeDrift, "ERROR store settings unsafe"},
		}},
		{name: "an identity check without an answer", steps: []step{
			{"identity", down, storeUnreachable, "WARN store unreachable"},
			{"ping", nil, storeUnreachable, ""},
			{"identity", nil, storeUnreachable, ""},
			{"audit", nil, storeServing, "INFO store answers again"},
		}},
		{name: "an audit without an answer", steps: []step{
			{"audit", down, storeUnreachable, "WARN store unreachable"},
			{"audit", nil, storeUnreachable, ""},
			{"identity", nil, storeServing, "INFO store answers again"},
		}},
		{name: "drift outlasts an unreachable store until an audit passes", steps: []step{
			{"audit", settings, storeDrift, "ERROR store settings unsafe"},
			{"audit", settings, storeDrift, ""},
			{"ping", down, storeDrift, ""},
			{"audit", down, storeDrift, ""},
			{"ping", nil, storeDrift, ""},
			{"identity", nil, storeDrift, ""},
			{"audit", nil, storeServing, "INFO store answers again"},
		}},
		{name: "lost is for good", steps: []step{
			{"ping", down, storeUnreachable, "WARN store unreachable"},
			{"identity", lost, storeLost, "ERROR store lost"},
			{"identity", lost, storeLost, ""},
			{"ping", nil, storeLost, ""},
			{"identity", nil, storeLost, ""},
			{"audit", nil, storeLost, ""},
		}},
		{name: "drift, then lost", steps: []step{
			{"audit", settings, storeDrift, "ERROR store settings unsafe"},
			{"audit", lost, storeLost, "ERROR store lost"},
			{"audit", nil, storeLost, ""},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			hs := health.NewServer()
			setHealth(hs, healthpb.HealthCheckResponse_SERVING) // as serve starts
			flushes := 0
			g := newGuard(nil, defaultGuard(), hs, func() { flushes++ }, slog.New(slog.NewJSONHandler(&logs, nil)))
			g.hasIdentity, g.hasAudit = true, true
			slots := map[string]*error{"ping": &g.pingErr, "identity": &g.identityErr, "audit": &g.auditErr, "stale audit": &g.auditErr}
			for i, s := range tc.steps {
				logs.Reset()
				if s.check == "stale audit" {
					g.recordSince(slots[s.check], s.err, g.outage-1)
				} else {
					g.record(slots[s.check], s.err)
				}
				if got := storeState(g.state.Load()); got != s.want {
					t.Fatalf("step %d (%s: %v): state %v, want %v", i, s.check, s.err, got, s.want)
				}
				if got := firstLogLine(t, logs.String()); !strings.HasPrefix(got, s.wantLog) || (s.wantLog == "") != (got == "") {
					t.Errorf("step %d (%s: %v): logged %q, want %q", i, s.check, s.err, got, s.wantLog)
				}
				if n := strings.Count(logs.String(), "\n"); n > 1 {
					t.Errorf("step %d: %d log lines, want at most one:\n%s", i, n, logs.String())
				}
				refused := g.refused()
				if gated := s.want == storeDrift || s.want == storeLost; gated != (refused != nil) {
					t.Errorf("step %d: refused = %v in state %v", i, refused, s.want)
				}
				if refused != nil && !errors.Is(refused, consent.ErrUnavailable) {
					t.Errorf("step %d: refusal %v is not ErrUnavailable", i, refused)
				}
				wantHealth := healthpb.HealthCheckResponse_NOT_SERVING
				if s.want == storeServing {
					wantHealth = healthpb.HealthCheckResponse_SERVING
				}
				for _, service := range services {
					resp, err := hs.Check(context.Background(), &healthpb.HealthCheckRequest{Service: service})
					if err != nil || resp.GetStatus() != wantHealth {
						t.Errorf("step %d: health of %q %v, %v; want %v", i, service, resp.GetStatus(), err, wantHealth)
					}
				}
			}
			wantFlushes := 0
			if tc.steps[len(tc.steps)-1].want == storeLost {
				wantFlushes = 1
			}
			if flushes != wantFlushes {
				t.Errorf("cache flushed %d times, want %d", flushes, wantFlushes)
			}
		})
	}
}

// firstLogLine returns "LEVEL msg" of the first JSON record in logs.
func firstLogLine(t *testing.T, logs string) string {
	t.Helper()
	line, _, _ := strings.Cut(logs, "\n")
	if line == "" {
		return ""
	}
	var rec struct{ Level, Msg string }
	if err := json.Unmarshal([]byte(line), &rec); err != nil {
		t.Fatalf("log line %q: %v", line, err)
	}
	return rec.Level + " " + rec.Msg
}

// TestStoreRefusal: what a refused call answers names the state, the
// store's own words (the setting and the node, the missing marker) and, for
// a lost store, what the operator does.
func TestStoreRefusal(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want []string
	}{
		{name: "lost", err: &storeRefusal{state: storeLost, cause: errors.New("consentd:id is missing")},
			want: []string{"store unavailable", "wiped or replaced", "consentd:id is missing", "restore the data", "restart consentd", "--redis-init"}},
		{name: "drift", err: &storeRefusal{state: storeDrift, cause: errors.New("127.0.0.1:7000: maxmemory-policy allkeys-lru")},
			want: []string{"store unavailable", "settings are unsafe", "127.0.0.1:7000: maxmemory-policy allkeys-lru", "until they are restored"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !errors.Is(tc.err, consent.ErrUnavailable) {
				t.Errorf("%v is not ErrUnavailable", tc.err)
			}
			for _, w := range tc.want {
				if !strings.Contains(tc.err.Error(), w) {
					t.Errorf("%q does not say %q", tc.err, w)
				}
			}
		})
	}
}

// TestWhileReachable: a call without a deadline of its own (a walk of the
// whole store) is refused while the store does not answer, and cancelled,
// answering UNAVAILABLE, when the guard finds the store not answering
// mid-call; once the store serves again, calls run.
func TestWhileReachable(t *testing.T) {
	down := fmt.Errorf("%w: i/o timeout", consent.ErrUnavailable)
	g := newGuard(nil, defaultGuard(), health.NewServer(), func() {}, slog.New(slog.DiscardHandler))
	started := make(chan struct{})
	result := make(chan error, 1)
	go func() {
		result <- g.whileReachable(context.Background(), func(ctx context.Context) error {
			close(started)
			<-ctx.Done() // a walk that would outlast the store
			return ctx.Err()
		})
	}()
	<-started
	g.record(&g.pingErr, down)
	err := <-result
	if !errors.Is(err, consent.ErrUnavailable) || !strings.Contains(err.Error(), "not serving (unreachable)") {
		t.Errorf("walk when the store stopped answering: %v, want UNAVAILABLE, not serving (unreachable)", err)
	}
	ran := false
	err = g.whileReachable(context.Background(), func(context.Context) error { ran = true; return nil })
	if ran || !errors.Is(err, consent.ErrUnavailable) {
		t.Errorf("walk while unreachable: ran %v, err %v; want refused with UNAVAILABLE", ran, err)
	}
	g.record(&g.pingErr, nil)
	if err := g.whileReachable(context.Background(), func(ctx context.Context) error { ran = true; return ctx.Err() }); err != nil || !ran {
		t.Errorf("walk once serving again: ran %v, err %v; want it run", ran, err)
	}
	// A store that answers but is lost is walked: that is how the operator
	// learns what it lost.
	g.record(&g.identityErr, fmt.Errorf("%w: partition 0's marker is missing", store.ErrStoreLost))
	ran = false
	if err := g.whileReachable(context.Background(), func(ctx context.Context) error { ran = true; return ctx.Err() }); err != nil || !ran {
		t.Errorf("walk of a lost store that answers: ran %v, err %v; want it run", ran, err)
	}
}
