package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"regexp"
	"strings"

	"github.com/consentd/consentd/internal/daemon"
)

// envPrefix starts the environment variable of every flag: see envName.
const envPrefix = "CONSENTD_"

// envName is the environment variable that sets flag name when the command
// line does not: --cache-bytes is CONSENTD_CACHE_BYTES.
func envName(name string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// usageError is a command line the flag parser refused: an unknown flag, a
// value of the wrong type, a stray argument. It is answered with a pointer
// to --help, not with the whole usage, which would bury it.
type usageError struct{ error }

// parseFlags reads the configuration from args and, for every flag args do
// not give, from its environment variable (envName) as getenv reports it; an
// empty variable counts as unset. --help writes the usage to stderr and
// returns flag.ErrHelp.
func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (daemon.Config, error) {
	c := daemon.DefaultConfig()
	fs := flagSet(&c)
	// The parser's own messages would go out with the whole usage; the
	// caller prints the error alone.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		printUsage(stderr, fs)
		return c, err
	case err != nil:
		return c, usageError{errors.New(dashDash(err.Error()))}
	}
	if fs.NArg() > 0 {
		return c, usageError{fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))}
	}
	fromEnv, err := setFromEnv(fs, getenv)
	if err != nil {
		return c, err
	}
	c.RedisPassword = daemon.Password(getenv(envName("redis-password")))
	if err := c.Check(); err != nil {
		return c, blameEnv(err, fromEnv)
	}
	return c, nil
}

// flagSet defines consentd's flags on c, whose values are their defaults.
func flagSet(c *daemon.Config) *flag.FlagSet {
	fs := flag.NewFlagSet("consentd", flag.ContinueOnError)
	fs.StringVar(&c.Listen, "listen", c.Listen, "gRPC listen address: host:port, or unix:PATH for a Unix socket")
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "directory of the embedded store and its secret (a relative one is in the working directory: the start line logs the absolute path)")
	fs.StringVar(&c.PurposesFile, "purposes", c.PurposesFile, "purpose registry file (JSON); default: the built-in registry")
	fs.StringVar(&c.SecretFile, "secret-file", c.SecretFile, "HMAC secret for contact keys; default: DATA-DIR/secret, created (0600) on first start; required with Redis")
	fs.StringVar(&c.DefaultRegion, "default-region", c.DefaultRegion, "CLDR region code (GB, US, DE) phone numbers written without + and a country code are read in; default: such numbers are refused")
	fs.Int64Var(&c.CacheBytes, "cache-bytes", c.CacheBytes, "memory for cached records in bytes; 0 disables the cache")
	fs.TextVar(&c.LogLevel, "log-level", c.LogLevel, "log level: debug, info, warn, error")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "log format: text or json")
	fs.StringVar(&c.RedisURL, "redis", c.RedisURL, "Redis URL of a standalone server (redis://host:6379/0, rediss:// for TLS); default: the embedded store")
	fs.StringVar(&c.RedisSentinel, "redis-sentinel", c.RedisSentinel, "Redis Sentinel: MASTER@host:port,host:port,...")
	fs.StringVar(&c.RedisCluster, "redis-cluster", c.RedisCluster, "Redis Cluster seed nodes: host:port,host:port,...")
	fs.StringVar(&c.RedisPasswordFile, "redis-password-file", c.RedisPasswordFile, "file holding the Redis password (or set CONSENTD_REDIS_PASSWORD)")
	fs.IntVar(&c.RedisWaitReplicas, "redis-wait-replicas", c.RedisWaitReplicas, "acknowledge a write only after WAIT reports this many replicas have it")
	fs.BoolVar(&c.RedisInit, "redis-init", c.RedisInit, "initialise an empty Redis for a new deployment: give it once, on the first start, then remove it; never on a Redis that should hold data (without it consentd refuses an empty Redis, which may have been wiped)")
	fs.BoolVar(&c.RedisOperatorChecksSettings, "redis-operator-checks-settings", c.RedisOperatorChecksSettings, "where CONFIG is renamed or denied: the operator states that maxmemory-policy noeviction, appendonly yes and appendfsync always hold on every master and owns that check (consentd cannot read them)")
	fs.DurationVar(&c.StoreReadTimeout, "store-read-timeout", c.StoreReadTimeout, "deadline of one store read (a Check the cache cannot answer); past it the call answers UNAVAILABLE")
	fs.DurationVar(&c.StoreWriteTimeout, "store-write-timeout", c.StoreWriteTimeout, "deadline of one store write (Grant, Withdraw, Erase, a WriteBatch) and of a page of history; past it the call answers UNAVAILABLE (the write may have been applied: retry with the same request_id)")
	fs.UintVar(&c.Partitions, "partitions", c.Partitions, "Redis partitions (fixed per deployment; every sidecar must agree)")
	fs.DurationVar(&c.Lease, "lease", c.Lease, "with Redis: how long a cached record may be used after the change feed last caught up")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout, "how long in-flight calls may take to finish on SIGTERM")
	fs.StringVar(&c.HTTP, "http", c.HTTP, "HTTP listen address (host:port) for one-click unsubscribe links, POST /unsubscribe/{token}; default: off")
	fs.DurationVar(&c.UnsubscribeTTL, "unsubscribe-ttl", c.UnsubscribeTTL, "how long a minted one-click unsubscribe link keeps working")
	fs.StringVar(&c.MetricsListen, "metrics-listen", c.MetricsListen, "HTTP listen address (host:port) for Prometheus metrics, GET /metrics; default: off")
	fs.StringVar(&c.HealthListen, "health-listen", c.HealthListen, "plaintext gRPC listen address (host:port) serving only grpc.health.v1, for Kubernetes gRPC probes; default: off")
	fs.StringVar(&c.TLSCert, "tls-cert", c.TLSCert, "PEM server certificate: the gRPC listener serves TLS (1.2 or later); needs --tls-key; default: plaintext")
	fs.StringVar(&c.TLSKey, "tls-key", c.TLSKey, "PEM private key of --tls-cert")
	fs.StringVar(&c.ClientCA, "client-ca", c.ClientCA, "PEM CA certificates: require client certificates signed by them (mTLS); the caller is named by its SPIFFE URI SAN, else its subject CN; needs --tls-cert")
	fs.StringVar(&c.TokensFile, "tokens", c.TokensFile, "bearer tokens file, one 'NAME SHA256HEX' per line (# comments): calls must send authorization: Bearer TOKEN; default: off")
	fs.StringVar(&c.PolicyFile, "policy", c.PolicyFile, "entitlements file (JSON): the RPCs and purposes each caller may use, reloaded on SIGHUP and when it changes; needs --tokens or --client-ca; default: every identified caller may do everything")
	fs.StringVar(&c.OTLPEndpoint, "otlp-endpoint", c.OTLPEndpoint, "OpenTelemetry collector to send traces of gRPC calls to over OTLP/gRPC: host:port or https://host:port (TLS), http://host:port (plaintext); spans never hold a contact; default: off")
	fs.Float64Var(&c.TraceSampleRatio, "trace-sample-ratio", c.TraceSampleRatio, "with --otlp-endpoint: the share (0 to 1) of calls without a sampled caller trace that start a trace")

	l := &c.Limits
	fs.Int64Var(&l.Audience.Window, "audience-window-bytes", l.Audience.Window, "bytes one FilterAudience stream may hold of contacts read and not yet answered; it reads no more while its client does not read the answers")
	fs.IntVar(&l.Audience.MaxStreams, "audience-max-streams", l.Audience.MaxStreams, "FilterAudience streams open at once; a stream beyond is refused with RESOURCE_EXHAUSTED")
	fs.Int64Var(&l.Audience.MaxBytes, "audience-max-bytes", l.Audience.MaxBytes, "bytes all FilterAudience streams may hold together; a new stream without room for its window is refused with RESOURCE_EXHAUSTED")
	fs.Float64Var(&l.Audience.CallerShare, "audience-caller-share", l.Audience.CallerShare, "with caller identity: the share (0 to 1) of --audience-max-streams and --audience-max-bytes one caller may hold")
	fs.Int64Var(&l.MaxRecvBytes, "grpc-max-recv-bytes", l.MaxRecvBytes, "largest request message in bytes; a larger one is refused with RESOURCE_EXHAUSTED")
	fs.UintVar(&l.MaxConcurrentStreams, "grpc-max-concurrent-streams", l.MaxConcurrentStreams, "calls in flight at once on one client connection; more wait in the client")
	fs.Int64Var(&l.StreamWindow, "grpc-stream-window-bytes", l.StreamWindow, "bytes of a call's request data gRPC buffers before the call reads them (HTTP/2 flow control window; at least 65535)")
	fs.DurationVar(&l.KeepaliveMinTime, "grpc-keepalive-min-time", l.KeepaliveMinTime, "the shortest interval between a client's keepalive pings; a client pinging more often is disconnected")
	fs.DurationVar(&l.KeepaliveTime, "grpc-keepalive-time", l.KeepaliveTime, "ping a client whose connection has been quiet this long, to find dead peers")
	fs.DurationVar(&l.KeepaliveTimeout, "grpc-keepalive-timeout", l.KeepaliveTimeout, "close a connection whose client does not answer a ping within this")
	fs.DurationVar(&l.MaxConnIdle, "grpc-max-connection-idle", l.MaxConnIdle, "close a connection without calls for this long (the client reconnects when it needs to); 0: never")
	fs.DurationVar(&l.MaxConnAge, "grpc-max-connection-age", l.MaxConnAge, "ask a client to reconnect after this long (±10%); calls in flight go on; 0: never")
	fs.DurationVar(&l.MaxConnAgeGrace, "grpc-max-connection-age-grace", l.MaxConnAgeGrace, "after --grpc-max-connection-age, cut calls still in flight after this long; 0: never (a long audience stream finishes)")

	fs.VisitAll(func(f *flag.Flag) { f.Usage += " ($" + envName(f.Name) + ")" })
	return fs
}

// printUsage writes --help: the flags as the docs spell them, --name.
func printUsage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintf(w, `Usage: consentd [flags]

Every flag can also be set by an environment variable: %s and the
flag's name in upper case, dashes as underscores (--cache-bytes is
%s). A flag given on the command line wins over the
environment; an empty variable counts as unset. The Redis password may
come from %s instead of --redis-password-file.

`, envPrefix, envName("cache-bytes"), envName("redis-password"))
	var defaults bytes.Buffer
	fs.SetOutput(&defaults)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
	// PrintDefaults starts each flag's line with "  -name".
	w.Write(regexp.MustCompile(`(?m)^  -`).ReplaceAll(defaults.Bytes(), []byte("  --")))
}

// dashDash spells the flag in a message of the flag package as the docs
// and --help do: --name, not -name.
func dashDash(msg string) string {
	return strings.NewReplacer("not defined: -", "not defined: --", "for flag -", "for flag --", "value for -", "value for --", "argument: -", "argument: --").Replace(msg)
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
			err = fmt.Errorf("$%s: invalid value %q for --%s: %v", envName(f.Name), v, f.Name, e)
			return
		}
		set = append(set, f.Name)
	})
	return set, err
}

// blameEnv names the environment variable behind a flag whose value Check
// refused, when the value came from there.
func blameEnv(err error, fromEnv []string) error {
	for _, name := range fromEnv {
		if strings.HasPrefix(err.Error(), "--"+name+":") {
			return fmt.Errorf("%w (set by $%s)", err, envName(name))
		}
	}
	return err
}
