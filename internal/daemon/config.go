package daemon

import (
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/consentd/consentd/internal/identifier"
	"github.com/consentd/consentd/internal/unsubscribe"
	"github.com/consentd/consentd/server"
)

// Config is what consentd runs with. cmd/consentd sets it from its flags
// (each field's comment names the flag); DefaultConfig is what it starts
// from, so a flag's default is the field's here. Check's messages name the
// flags too: they are what an operator reads.
type Config struct {
	Listen        string // --listen: host:port, or unix:PATH
	HTTP          string // --http: one-click unsubscribe links; "" is off
	MetricsListen string // --metrics-listen; "" is off
	HealthListen  string // --health-listen; "" is off

	DataDir      string // --data-dir: the embedded store and its secret
	PurposesFile string // --purposes; "" is the built-in registry
	// SecretFile is --secret-file; "" is DataDir/secret with the embedded
	// store, created on first start.
	SecretFile string
	CacheBytes int64 // --cache-bytes; 0 disables the cache
	// DefaultRegion is --default-region: the CLDR region (GB) phone
	// numbers written without + and a country code are read in; "" refuses
	// them.
	DefaultRegion string

	RedisURL      string // --redis
	RedisSentinel string // --redis-sentinel: MASTER@host:port,...
	RedisCluster  string // --redis-cluster: host:port,...
	// RedisPasswordFile is --redis-password-file; without it, RedisPassword
	// ($CONSENTD_REDIS_PASSWORD) is used.
	RedisPasswordFile           string
	RedisPassword               Password
	RedisWaitReplicas           int           // --redis-wait-replicas
	RedisInit                   bool          // --redis-init
	RedisOperatorChecksSettings bool          // --redis-operator-checks-settings
	Partitions                  uint          // --partitions
	Lease                       time.Duration // --lease

	StoreReadTimeout  time.Duration // --store-read-timeout
	StoreWriteTimeout time.Duration // --store-write-timeout
	ShutdownTimeout   time.Duration // --shutdown-timeout
	UnsubscribeTTL    time.Duration // --unsubscribe-ttl

	LogLevel  slog.Level // --log-level
	LogFormat string     // --log-format: text or json

	TLSCert    string // --tls-cert
	TLSKey     string // --tls-key
	ClientCA   string // --client-ca
	TokensFile string // --tokens
	PolicyFile string // --policy

	OTLPEndpoint     string  // --otlp-endpoint; "" is off
	TraceSampleRatio float64 // --trace-sample-ratio

	Limits ServerLimits // --audience-* and --grpc-*
}

// DefaultConfig is the configuration of consentd started without flags.
func DefaultConfig() Config {
	return Config{
		Listen:            "127.0.0.1:50051",
		DataDir:           "./consentd-data",
		CacheBytes:        256 << 20,
		Partitions:        16,
		Lease:             2 * time.Second,
		StoreReadTimeout:  200 * time.Millisecond,
		StoreWriteTimeout: 2 * time.Second,
		ShutdownTimeout:   10 * time.Second,
		// A year: see unsubscribe.DefaultTTL (old emails must keep working;
		// withdrawing must be as easy as granting).
		UnsubscribeTTL:   unsubscribe.DefaultTTL,
		LogLevel:         slog.LevelInfo,
		LogFormat:        "text",
		TraceSampleRatio: 1,
		Limits: ServerLimits{
			Audience: server.AudienceLimits{
				Window:      server.DefaultAudienceWindow,
				MaxStreams:  server.DefaultAudienceMaxStreams,
				MaxBytes:    server.DefaultAudienceMaxBytes,
				CallerShare: server.DefaultAudienceCallerShare,
			},
			MaxRecvBytes:         defaultMaxRecvBytes,
			MaxConcurrentStreams: defaultMaxConcurrentStreams,
			StreamWindow:         defaultStreamWindow,
			KeepaliveMinTime:     15 * time.Second,
			KeepaliveTime:        time.Minute,
			KeepaliveTimeout:     20 * time.Second,
			MaxConnIdle:          15 * time.Minute,
			MaxConnAge:           time.Hour,
		},
	}
}

// Check refuses values no flag parser catches. A message that is about one
// flag starts with its name ("--lease: ..."), so that cmd/consentd can say
// where a value came from.
func (c Config) Check() error {
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return fmt.Errorf("--log-format: want text or json, got %q", c.LogFormat)
	}
	n := 0
	for _, v := range []string{c.RedisURL, c.RedisSentinel, c.RedisCluster} {
		if v != "" {
			n++
		}
	}
	if n > 1 {
		return fmt.Errorf("give at most one of --redis, --redis-sentinel, --redis-cluster")
	}
	if c.DefaultRegion != "" {
		if err := identifier.CheckRegion(c.DefaultRegion); err != nil {
			return fmt.Errorf("--default-region: %q is %w", c.DefaultRegion, err)
		}
	}
	if c.Partitions == 0 || c.Partitions > 1<<16 {
		return fmt.Errorf("--partitions: want 1 to 65536, got %d", c.Partitions)
	}
	if c.Lease <= 0 {
		return fmt.Errorf("--lease: must be positive")
	}
	for _, t := range []struct {
		name string
		d    time.Duration
	}{{"store-read-timeout", c.StoreReadTimeout}, {"store-write-timeout", c.StoreWriteTimeout}} {
		if t.d < time.Millisecond || t.d > maxStoreTimeout {
			return fmt.Errorf("--%s: want 1ms to %v, got %v", t.name, maxStoreTimeout, t.d)
		}
	}
	if !c.usesRedis() {
		// An empty directory would be the working directory: the store
		// would land wherever consentd happens to start.
		if c.DataDir == "" {
			return fmt.Errorf("--data-dir: must not be empty")
		}
		for _, f := range []struct {
			name string
			on   bool
		}{{"redis-init", c.RedisInit}, {"redis-operator-checks-settings", c.RedisOperatorChecksSettings}} {
			if f.on {
				return fmt.Errorf("--%s: needs --redis, --redis-sentinel or --redis-cluster", f.name)
			}
		}
	}
	// Links must expire before timestamps do (year 9999), or every mint
	// would fail; a century is far past any use.
	if c.UnsubscribeTTL <= 0 || c.UnsubscribeTTL > 100*365*24*time.Hour {
		return fmt.Errorf("--unsubscribe-ttl: must be positive and at most 100 years, got %v", c.UnsubscribeTTL)
	}
	// The listeners' addresses; the parts they serve are not needed here.
	for _, l := range listeners(c, parts{}) {
		if l.addr == "" && l.required {
			return fmt.Errorf("--%s: must not be empty", l.flag)
		}
		if l.addr == "" || !l.hostPort {
			continue
		}
		if _, _, err := net.SplitHostPort(l.addr); err != nil {
			return fmt.Errorf("--%s: want host:port (127.0.0.1:8080, :8080), got %q", l.flag, l.addr)
		}
	}
	if err := c.checkTracing(); err != nil {
		return err
	}
	if err := c.Limits.check(); err != nil {
		return err
	}
	return c.checkSecurity()
}

func (c Config) usesRedis() bool {
	return c.RedisURL != "" || c.RedisSentinel != "" || c.RedisCluster != ""
}

// Password is a secret of the configuration: printed (%v, %+v, a log
// attribute) it shows whether it is set, never its text, so a Config can be
// printed or compared in a test without leaking it.
type Password string

// String says whether the password is set.
func (p Password) String() string {
	if p == "" {
		return ""
	}
	return "[set]"
}

// GoString is String, for %#v.
func (p Password) GoString() string { return p.String() }

// LogValue is String, for slog.
func (p Password) LogValue() slog.Value { return slog.StringValue(p.String()) }

// MarshalText is String, for encoding/json (slog's JSON handler prints a
// Config that way).
func (p Password) MarshalText() ([]byte, error) { return []byte(p.String()), nil }
