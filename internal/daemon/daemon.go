// Package daemon is consentd itself: flags, wiring of the store, cache and
// server, serving and graceful shutdown. cmd/consentd is a thin main around
// it, and other tools (the benchmark harness) run it as their own subprocess.
package daemon

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
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
)

type config struct {
	redisURL, redisSentinel, redisCluster string
	redisPasswordFile                     string
	redisWaitReplicas                     int
	redisInit                             bool
	redisOperatorChecksSettings           bool
	storeReadTimeout, storeWriteTimeout   time.Duration
	partitions                            uint
	lease                                 time.Duration
	listen                                string
	dataDir                               string
	purposes                              string
	secretFile                            string
	cacheBytes                            int64
	logLevel                              slog.Level
	logFormat                             string
	shutdownTimeout                       time.Duration
	http                                  string
	metricsListen                         string
	healthListen                          string
	unsubscribeTTL                        time.Duration
	tlsCert, tlsKey, clientCA             string
	tokensFile                            string
	policyFile                            string
	otlpEndpoint                          string
	traceSampleRatio                      float64
	limits                                serverLimits
	// redisPassword is $CONSENTD_REDIS_PASSWORD, used when no
	// -redis-password-file is given.
	redisPassword string
}

// envPrefix starts the environment variable of every flag: see envName.
const envPrefix = "CONSENTD_"

// envName is the environment variable that sets flag name when the command
// line does not: --cache-bytes is CONSENTD_CACHE_BYTES.
func envName(name string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// parseFlags reads the configuration from args and, for every flag args do
// not give, from its environment variable (envName) as getenv reports it; an
// empty variable counts as unset.
func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("consentd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `Usage: consentd [flags]

Every flag can also be set by an environment variable: %s and the
flag's name in upper case, dashes as underscores (--cache-bytes is
%s). A flag given on the command line wins over the
environment; an empty variable counts as unset. The Redis password may
come from %s instead of -redis-password-file.

`, envPrefix, envName("cache-bytes"), envName("redis-password"))
		fs.PrintDefaults()
	}
	fs.StringVar(&c.listen, "listen", "127.0.0.1:50051", "gRPC listen address: host:port, or unix:PATH for a Unix socket")
	fs.StringVar(&c.dataDir, "data-dir", "./consentd-data", "directory of the embedded store and its secret")
	fs.StringVar(&c.purposes, "purposes", "", "purpose registry file (JSON); default: the built-in registry")
	fs.StringVar(&c.secretFile, "secret-file", "", "HMAC secret for contact keys; default: DATA-DIR/secret, created (0600) on first start; required with Redis")
	fs.Int64Var(&c.cacheBytes, "cache-bytes", 256<<20, "memory for cached records in bytes; 0 disables the cache")
	fs.TextVar(&c.logLevel, "log-level", slog.LevelInfo, "log level: debug, info, warn, error")
	fs.StringVar(&c.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&c.redisURL, "redis", "", "Redis URL of a standalone server (redis://host:6379/0, rediss:// for TLS); default: the embedded store")
	fs.StringVar(&c.redisSentinel, "redis-sentinel", "", "Redis Sentinel: MASTER@host:port,host:port,...")
	fs.StringVar(&c.redisCluster, "redis-cluster", "", "Redis Cluster seed nodes: host:port,host:port,...")
	fs.StringVar(&c.redisPasswordFile, "redis-password-file", "", "file holding the Redis password (or set CONSENTD_REDIS_PASSWORD)")
	fs.IntVar(&c.redisWaitReplicas, "redis-wait-replicas", 0, "acknowledge a write only after WAIT reports this many replicas have it")
	fs.BoolVar(&c.redisInit, "redis-init", false, "initialise an empty Redis for a new deployment: give it once, on the first start, then remove it; never on a Redis that should hold data (without it consentd refuses an empty Redis, which may have been wiped)")
	fs.BoolVar(&c.redisOperatorChecksSettings, "redis-operator-checks-settings", false, "where CONFIG is renamed or denied: the operator states that maxmemory-policy noeviction, appendonly yes and appendfsync always hold on every master and owns that check (consentd cannot read them)")
	fs.DurationVar(&c.storeReadTimeout, "store-read-timeout", 200*time.Millisecond, "deadline of one store read (a Check the cache cannot answer); past it the call answers UNAVAILABLE")
	fs.DurationVar(&c.storeWriteTimeout, "store-write-timeout", 2*time.Second, "deadline of one store write (Grant, Withdraw, Erase, a WriteBatch) and of a page of history; past it the call answers UNAVAILABLE (the write may have been applied: retry with the same request_id)")
	fs.UintVar(&c.partitions, "partitions", 16, "Redis partitions (fixed per deployment; every sidecar must agree)")
	fs.DurationVar(&c.lease, "lease", 2*time.Second, "with Redis: how long a cached record may be used after the change feed last caught up")
	fs.DurationVar(&c.shutdownTimeout, "shutdown-timeout", 10*time.Second, "how long in-flight calls may take to finish on SIGTERM")
	fs.StringVar(&c.http, "http", "", "HTTP listen address (host:port) for one-click unsubscribe links, POST /unsubscribe/{token}; default: off")
	// A year by default: see unsubscribe.DefaultTTL (old emails must keep
	// working; withdrawing must be as easy as granting).
	fs.DurationVar(&c.unsubscribeTTL, "unsubscribe-ttl", unsubscribe.DefaultTTL, "how long a minted one-click unsubscribe link keeps working")
	fs.StringVar(&c.metricsListen, "metrics-listen", "", "HTTP listen address (host:port) for Prometheus metrics, GET /metrics; default: off")
	fs.StringVar(&c.healthListen, "health-listen", "", "plaintext gRPC listen address (host:port) serving only grpc.health.v1, for Kubernetes gRPC probes; default: off")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "PEM server certificate: the gRPC listener serves TLS (1.2 or later); needs -tls-key; default: plaintext")
	fs.StringVar(&c.tlsKey, "tls-key", "", "PEM private key of -tls-cert")
	fs.StringVar(&c.clientCA, "client-ca", "", "PEM CA certificates: require client certificates signed by them (mTLS); the caller is named by its SPIFFE URI SAN, else its subject CN; needs -tls-cert")
	fs.StringVar(&c.tokensFile, "tokens", "", "bearer tokens file, one 'NAME SHA256HEX' per line (# comments): calls must send authorization: Bearer TOKEN; default: off")
	fs.StringVar(&c.policyFile, "policy", "", "entitlements file (JSON): the RPCs and purposes each caller may use, reloaded on SIGHUP and when it changes; needs -tokens or -client-ca; default: every identified caller may do everything")
	fs.StringVar(&c.otlpEndpoint, "otlp-endpoint", "", "OpenTelemetry collector to send traces of gRPC calls to over OTLP/gRPC: host:port or https://host:port (TLS), http://host:port (plaintext); spans never hold a contact; default: off")
	fs.Float64Var(&c.traceSampleRatio, "trace-sample-ratio", 1, "with -otlp-endpoint: the share (0 to 1) of calls without a sampled caller trace that start a trace")
	c.limits.register(fs)
	fs.VisitAll(func(f *flag.Flag) { f.Usage += " ($" + envName(f.Name) + ")" })
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	fromEnv, err := setFromEnv(fs, getenv)
	if err != nil {
		return c, err
	}
	c.redisPassword = getenv(envName("redis-password"))
	if err := c.check(); err != nil {
		return c, blameEnv(err, fromEnv)
	}
	if c.secretFile == "" && !c.usesRedis() {
		c.secretFile = filepath.Join(c.dataDir, "secret")
	}
	return c, nil
}

// setFromEnv sets every flag the command line did not set from its
// environment variable, if that is not empty, and returns the names of the
// flags it set.
func setFromEnv(fs *flag.FlagSet, getenv func(string) string) ([]string, error) {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var (
		set []string
		err error
	)
	fs.VisitAll(func(f *flag.Flag) {
		v := getenv(envName(f.Name))
		if err != nil || given[f.Name] || v == "" {
			return
		}
		if e := fs.Set(f.Name, v); e != nil {
			err = fmt.Errorf("$%s: invalid value %q for -%s: %v", envName(f.Name), v, f.Name, e)
			return
		}
		set = append(set, f.Name)
	})
	return set, err
}

// blameEnv names the environment variable behind a flag whose value check
// refused, when the value came from there.
func blameEnv(err error, fromEnv []string) error {
	for _, name := range fromEnv {
		if strings.HasPrefix(err.Error(), "-"+name+":") {
			return fmt.Errorf("%w (set by $%s)", err, envName(name))
		}
	}
	return err
}

// check refuses values no flag parser catches.
func (c config) check() error {
	if c.logFormat != "text" && c.logFormat != "json" {
		return fmt.Errorf("-log-format: want text or json, got %q", c.logFormat)
	}
	n := 0
	for _, v := range []string{c.redisURL, c.redisSentinel, c.redisCluster} {
		if v != "" {
			n++
		}
	}
	if n > 1 {
		return fmt.Errorf("give at most one of -redis, -redis-sentinel, -redis-cluster")
	}
	if c.partitions == 0 || c.partitions > 1<<16 {
		return fmt.Errorf("-partitions: want 1 to 65536, got %d", c.partitions)
	}
	if c.lease <= 0 {
		return fmt.Errorf("-lease: must be positive")
	}
	for _, t := range []struct {
		name string
		d    time.Duration
	}{{"store-read-timeout", c.storeReadTimeout}, {"store-write-timeout", c.storeWriteTimeout}} {
		if t.d < time.Millisecond || t.d > maxStoreTimeout {
			return fmt.Errorf("-%s: want 1ms to %v, got %v", t.name, maxStoreTimeout, t.d)
		}
	}
	if !c.usesRedis() {
		for _, f := range []struct {
			name string
			on   bool
		}{{"redis-init", c.redisInit}, {"redis-operator-checks-settings", c.redisOperatorChecksSettings}} {
			if f.on {
				return fmt.Errorf("-%s: needs -redis, -redis-sentinel or -redis-cluster", f.name)
			}
		}
	}
	// Links must expire before timestamps do (year 9999), or every mint
	// would fail; a century is far past any use.
	if c.unsubscribeTTL <= 0 || c.unsubscribeTTL > 100*365*24*time.Hour {
		return fmt.Errorf("-unsubscribe-ttl: must be positive and at most 100 years, got %v", c.unsubscribeTTL)
	}
	for _, l := range []struct{ name, addr string }{{"http", c.http}, {"metrics-listen", c.metricsListen}, {"health-listen", c.healthListen}} {
		if l.addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(l.addr); err != nil {
			return fmt.Errorf("-%s: want host:port (127.0.0.1:8080, :8080), got %q", l.name, l.addr)
		}
	}
	if err := c.checkTracing(); err != nil {
		return err
	}
	if err := c.limits.check(); err != nil {
		return err
	}
	return c.checkSecurity()
}

func (c config) usesRedis() bool {
	return c.redisURL != "" || c.redisSentinel != "" || c.redisCluster != ""
}

// loadSecret reads the contact-key secret. The embedded store creates one
// beside its data; sidecars sharing Redis must all be given the same one.
func loadSecret(c config) ([]byte, error) {
	if !c.usesRedis() {
		return contactkey.LoadOrCreateSecret(c.secretFile)
	}
	if c.secretFile == "" {
		return nil, fmt.Errorf("with Redis, -secret-file is required: every sidecar must key contacts with the same secret (create one with: head -c 32 /dev/urandom > consentd.secret)")
	}
	secret, err := os.ReadFile(c.secretFile)
	if err != nil {
		return nil, fmt.Errorf("secret: %w", err)
	}
	return secret, nil
}

// Run runs consentd with command-line args, and the CONSENTD_* variables of
// the process's environment, until ctx is done (SIGTERM, SIGINT) and
// returns the process exit code.
func Run(ctx context.Context, args []string, stderr io.Writer) int {
	return run(ctx, args, os.Getenv, stderr)
}

// run is Run with the environment read through getenv.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) int {
	c, err := parseFlags(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
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
	log := slog.New(newLogHandler(stderr, c.logFormat, c.logLevel))
	// So is the policy, checked against the purpose registry it names.
	var purposes *consent.Registry
	if c.policyFile != "" {
		if purposes, err = loadPurposes(c.purposes); err != nil {
			fmt.Fprintln(stderr, "consentd: -purposes:", err)
			return 2
		}
		if sec.policy, err = loadPolicy(c.policyFile, purposes, log); err != nil {
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
// -purposes.
func serve(ctx context.Context, c config, sec security, purposes *consent.Registry, log *slog.Logger) error {
	var err error
	if purposes == nil {
		if purposes, err = loadPurposes(c.purposes); err != nil {
			return err
		}
	}
	secret, err := loadSecret(c)
	if err != nil {
		return err
	}
	keys, err := contactkey.New(secret)
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
	if c.metricsListen != "" {
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

	lis, err := listen(c.listen)
	if err != nil {
		return err
	}
	// WaitForHandlers: after a forced Stop, handlers still finish before the
	// store they use is closed.
	// One call log: a caller's refusals, by the codec or by a handler,
	// are throttled together.
	calls := server.NewCallLog(log)
	opts := append(m.serverOptions(), sec.serverOptions(log, server.DecodeOptions(calls))...)
	opts = append(opts, server.ServerOptions(calls)...)
	opts = append(opts, traceOpts...)
	opts = append(opts, c.limits.serverOptions()...)
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
		ConsistencyTokens: issuer, Unsubscribe: unsub, UnsubscribeTTL: c.unsubscribeTTL, Audience: c.limits.audience}
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

	// The unsubscribe listener, when asked for, serves the same server; it
	// stops (on every path out of here) before the store closes.
	var web *webServer
	if c.http != "" {
		if web, err = startWeb("http", c.http, api.HTTPHandler(log), log); err != nil {
			lis.Close()
			return err
		}
		defer web.close()
	}
	// So does the metrics listener.
	var mweb *webServer
	if m != nil {
		if mweb, err = startWeb("metrics-listen", c.metricsListen, m.handler(log), log); err != nil {
			lis.Close()
			return err
		}
		defer mweb.close()
	}

	// And the health listener, which outlives the main one so probes see
	// NOT_SERVING while in-flight calls finish.
	var probes *healthListener
	if c.healthListen != "" {
		if probes, err = startHealth(c.healthListen, hs); err != nil {
			lis.Close()
			return err
		}
		defer probes.close()
	}

	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	ready := []any{"addr", lis.Addr().String(), "store", st.kind, "purposes", len(purposes.All())}
	ready = append(ready, sec.logAttrs()...)
	if web != nil {
		ready = append(ready, "http", web.addr)
	}
	if mweb != nil {
		ready = append(ready, "metrics", mweb.addr)
	}
	if probes != nil {
		ready = append(ready, "health", probes.addr)
	}
	log.Info("consentd serving", ready...)

	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case err := <-web.failed():
		srv.Stop()
		<-served
		return fmt.Errorf("serve http: %w", err)
	case err := <-mweb.failed():
		srv.Stop()
		<-served
		return fmt.Errorf("serve metrics: %w", err)
	case err := <-probes.failed():
		srv.Stop()
		<-served
		return fmt.Errorf("serve health: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down", "timeout", c.shutdownTimeout)
	hs.Shutdown() // probes see NOT_SERVING while in-flight calls finish
	grace, cancel := context.WithTimeout(context.Background(), c.shutdownTimeout)
	defer cancel()
	webStopped := make(chan struct{})
	go func() { web.shutdown(grace); mweb.shutdown(grace); close(webStopped) }()
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-grace.Done():
		log.Warn("shutdown timeout: cancelling in-flight calls")
		srv.Stop()
		<-stopped
	}
	<-webStopped
	<-served
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

// listen opens addr; "unix:PATH" is a Unix socket, whose stale file from a
// crashed run is removed only when nothing answers on it.
func listen(addr string) (net.Listener, error) {
	path, ok := strings.CutPrefix(addr, "unix:")
	if !ok {
		return net.Listen("tcp", addr)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		if conn, err := net.DialTimeout("unix", path, time.Second); err == nil {
			conn.Close()
			return nil, fmt.Errorf("listen %s: another process is serving there", addr)
		}
		if err := os.Remove(path); err != nil {
			return nil, err
		}
	}
	return net.Listen("unix", path)
}
