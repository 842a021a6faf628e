// Package daemon is consentd itself: the wiring of the store, cache and
// server, its listeners, serving and graceful shutdown. cmd/consentd reads
// its flags into a Config and runs it; tools that need a consentd (the
// benchmark harness, daemontest) run that binary.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/consentd/consentd/consent"
	"github.com/consentd/consentd/internal/chain"
	"github.com/consentd/consentd/internal/consistencytoken"
	"github.com/consentd/consentd/internal/contactkey"
	"github.com/consentd/consentd/internal/unsubscribe"
	pb "github.com/consentd/consentd/proto/consent/v1"
	"github.com/consentd/consentd/server"
	"github.com/consentd/consentd/store"
)

// loadSecret reads the contact-key secret. The embedded store creates one
// beside its data; sidecars sharing Redis must all be given the same one.
func loadSecret(c Config) ([]byte, error) {
	if !c.usesRedis() {
		return contactkey.LoadOrCreateSecret(c.SecretFile)
	}
	if c.SecretFile == "" {
		return nil, fmt.Errorf("with Redis, --secret-file is required: every sidecar must key contacts with the same secret (create one with: head -c 32 /dev/urandom > consentd.secret)")
	}
	secret, err := os.ReadFile(c.SecretFile)
	if err != nil {
		return nil, fmt.Errorf("secret: %w", err)
	}
	return secret, nil
}

// Run runs consentd with c until ctx is done (cmd/consentd ends it on
// SIGTERM and SIGINT), logging to stderr, and returns the process exit
// code: 0 once it has stopped gracefully; 2 when the configuration is
// refused before anything is opened (a value Check refuses, a certificate,
// tokens, policy or purposes file that does not load); 1 when serving
// failed.
func Run(ctx context.Context, c Config, stderr io.Writer) int {
	if err := c.Check(); err != nil {
		fmt.Fprintln(stderr, "consentd:", err)
		return 2
	}
	// Certificates and tokens are configuration: a bad one stops consentd
	// like a bad flag, before it opens anything.
	sec, err := loadSecurity(c)
	if err != nil {
		fmt.Fprintln(stderr, "consentd:", err)
		return 2
	}
	log := slog.New(newLogHandler(stderr, c.LogFormat, c.LogLevel))
	// So is the policy, checked against the purpose registry it names.
	var purposes *consent.Registry
	if c.PolicyFile != "" {
		if purposes, err = loadPurposes(c.PurposesFile); err != nil {
			fmt.Fprintln(stderr, "consentd: --purposes:", err)
			return 2
		}
		if sec.policy, err = loadPolicy(c.PolicyFile, purposes, log); err != nil {
			fmt.Fprintln(stderr, "consentd:", err)
			return 2
		}
	}
	if err := serve(ctx, c, sec, purposes, log); err != nil {
		log.Error("consentd stopped", "error", err)
		return 1
	}
	return 0
}

// serve runs consentd until ctx is done; purposes, when nil, is read from
// --purposes.
func serve(ctx context.Context, c Config, sec security, purposes *consent.Registry, log *slog.Logger) error {
	var err error
	if purposes == nil {
		if purposes, err = loadPurposes(c.PurposesFile); err != nil {
			return err
		}
	}
	var ready []any // what the "consentd serving" line says beside the addresses
	if !c.usesRedis() {
		dir, newStore, err := openDataDir(c.DataDir)
		if err != nil {
			return err
		}
		c.DataDir = dir
		if c.SecretFile == "" {
			c.SecretFile = filepath.Join(dir, "secret")
		}
		// A store without its secret is a store no contact can be found in
		// again: a new secret would hide every withdrawal and erasure in it
		// (an erased contact could be imported again). Refuse, do not
		// make one.
		if _, err := os.Stat(c.SecretFile); !newStore && errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("--secret-file %s: missing beside an existing store (%s): without it no stored contact can be found; restore it from your backup", c.SecretFile, filepath.Join(dir, store.EmbeddedFile))
		}
		ready = append(ready, "data_dir", dir, "new_store", newStore)
	}
	secret, err := loadSecret(c)
	if err != nil {
		return err
	}
	keys, err := contactkey.New(secret, contactkey.WithDefaultRegion(c.DefaultRegion))
	if err != nil {
		return err
	}
	unsub, err := unsubscribe.NewSigner(secret)
	if err != nil {
		return err
	}
	history, err := chain.NewKey(secret)
	if err != nil {
		return err
	}
	st, err := openStore(ctx, c, keys.Check(), history, log)
	if err != nil {
		return err
	}
	defer st.Close()
	issuer, err := consistencytoken.NewIssuer(secret, st.backend.StoreID())
	if err != nil {
		return err
	}

	var m *daemonMetrics
	if c.MetricsListen != "" {
		if m, err = newMetrics(c, st, purposes); err != nil {
			return err
		}
	}

	// Spans still buffered are flushed once the server has stopped, on
	// every path out of here.
	traceOpts, stopTracing, err := startTracing(ctx, c, log)
	if err != nil {
		return err
	}
	defer flushTraces(stopTracing, log)

	// WaitForHandlers: after a forced Stop, handlers still finish before the
	// store they use is closed.
	// One call log: a caller's refusals, by the codec or by a handler,
	// are throttled together.
	calls := server.NewCallLog(log)
	opts := append(m.serverOptions(), sec.serverOptions(log, server.DecodeOptions(calls))...)
	opts = append(opts, server.ServerOptions(calls)...)
	opts = append(opts, traceOpts...)
	opts = append(opts, c.Limits.serverOptions()...)
	srv := grpc.NewServer(append(opts, grpc.WaitForHandlers(true))...)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	setHealth(hs, healthpb.HealthCheckResponse_SERVING)
	// The guard's gate stands before the cache and the store: while the
	// store is lost or its settings unsafe, nothing is answered from either.
	g := newGuard(st.backend, defaultGuard(), hs, st.records.Flush, log)
	if err := m.watch(g); err != nil {
		return err
	}
	cfg := server.Config{Keys: keys, Records: gatedRecords{g, st.records}, Store: gatedStore{g, st.calls}, Purposes: purposes,
		ConsistencyTokens: issuer, Unsubscribe: unsub, UnsubscribeTTL: c.UnsubscribeTTL, Audience: c.Limits.Audience}
	if m != nil {
		cfg.Decisions = m.decisions
	}
	api := server.New(cfg)
	api.Register(srv)
	reflection.Register(srv)
	m.initialize(srv)

	// Background work (the change feed, the guard) stops when serving
	// stops: it is cancelled before the store closes.
	bg, stopBG := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stopBG(); wg.Wait() }()
	if st.feed != nil {
		wg.Go(func() { st.feed.Run(bg) })
	}
	wg.Go(func() { g.Run(bg) })
	wg.Go(func() { returnMemory(bg, api, log) })
	if sec.policy != nil {
		// The policy reloads on SIGHUP and when its file changes.
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		wg.Go(func() { sec.policy.Run(bg, time.Second, hup) })
	}

	// Every listener has stopped before serve returns: before the
	// background work and the store (deferred above) stop.
	ls, err := startListeners(listeners(c, parts{grpc: srv, api: api, metrics: m, health: hs, log: log}))
	if err != nil {
		return err
	}
	ready = append(append(ls.attrs(), "store", st.kind, "purposes", len(purposes.All())), ready...)
	log.Info("consentd serving", append(ready, sec.logAttrs()...)...)

	select {
	case err := <-ls.failed:
		ls.close()
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down", "timeout", c.ShutdownTimeout)
	hs.Shutdown() // probes see NOT_SERVING while in-flight calls finish
	ls.shutdown(c.ShutdownTimeout)
	// The cache's counters over the whole run, also for those who run
	// without metrics (the benchmark reads the hit ratio here).
	cs := st.records.Stats()
	log.Info("stopped", "cache_hits", cs.Hits.Load(), "cache_misses", cs.Misses.Load(),
		"cache_rejected_fills", cs.RejectedFills.Load(), "cache_flushes", cs.Flushes.Load(),
		"cache_evictions", cs.Evictions.Load())
	return nil
}

var services = []string{"", pb.CheckService_ServiceDesc.ServiceName, pb.ConsentService_ServiceDesc.ServiceName}

func setHealth(hs *health.Server, st healthpb.HealthCheckResponse_ServingStatus) {
	for _, name := range services {
		hs.SetServingStatus(name, st)
	}
}

func loadPurposes(path string) (*consent.Registry, error) {
	if path == "" {
		return consent.NewRegistry(consent.DefaultPurposes())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return consent.ParseRegistry(b)
}
