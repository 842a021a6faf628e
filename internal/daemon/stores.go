package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/consentd/consentd/cache"
	"github.com/consentd/consentd/consent"
	"github.com/consentd/consentd/internal/chain"
	"github.com/consentd/consentd/internal/contactkey"
	"github.com/consentd/consentd/server"
	"github.com/consentd/consentd/store"
)

// backend is what serving needs of a store.
type backend interface {
	server.Store
	Get(ctx context.Context, key consent.Key) (consent.Record, error)
	GetMany(ctx context.Context, keys []consent.Key, out []consent.Record) error
	Ping(ctx context.Context) error
	OnChange(func(consent.Key, consent.ConsistencyToken))
	// StoreID names the store, for the consistency tokens it issues.
	StoreID() string
	// KeyScheme names how the store's contacts are keyed (contactkey.Scheme).
	KeyScheme() string
	Close() error
}

// stack is a store with its cache and, for Redis, its change feed.
type stack struct {
	kind    string
	backend backend // the store itself: what the guard watches
	// calls is the store with the deadlines of --store-read-timeout and
	// --store-write-timeout: the cache reads and the server writes through
	// it, never through backend.
	calls   deadlines
	records *cache.Cache
	feed    *store.Feed
	audit   *store.AuditStats // nil but for Redis
	closers []func() error
}

func (s *stack) Close() error {
	var first error
	for i := len(s.closers) - 1; i >= 0; i-- {
		if err := s.closers[i](); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// openStore opens the embedded store, or Redis when one is configured, and
// puts the cache in front of it.
func openStore(ctx context.Context, c Config, secretCheck string, ch *chain.Key, log *slog.Logger) (*stack, error) {
	if !c.usesRedis() {
		st, err := store.OpenEmbeddedConfig(c.DataDir, ch, store.EmbeddedConfig{KeyScheme: newStoreScheme})
		if err != nil {
			return nil, unmigrated(c, err)
		}
		s := &stack{kind: "embedded", backend: st, calls: c.deadlines(st), closers: []func() error{st.Close}}
		// Writes are local and reported in order: no lease is needed.
		records, err := cache.New(s.calls, cache.Config{MaxBytes: c.CacheBytes, Partitions: 1})
		if err != nil {
			s.Close()
			return nil, err
		}
		s.records = records
		s.closers = append(s.closers, func() error { records.Close(); return nil })
		st.OnChange(records.Invalidate)
		return s, nil
	}

	password, err := redisPassword(c)
	if err != nil {
		return nil, err
	}
	rdb, err := redisClient(c, password, 0)
	if err != nil {
		return nil, err
	}
	s := &stack{kind: "redis", closers: []func() error{rdb.Close}}
	// OpenRedis refuses an empty Redis without --redis-init (it may have
	// been wiped), a Redis of another deployment, and unsafe settings: each
	// stops consentd before it listens, with the store's message.
	st, err := store.OpenRedis(ctx, rdb, store.RedisConfig{
		Partitions: uint32(c.Partitions), SecretCheck: secretCheck, WaitReplicas: c.RedisWaitReplicas,
		WaitTimeout: c.waitTimeout(), Chain: ch, Init: c.RedisInit, OperatorChecksSettings: c.RedisOperatorChecksSettings,
		KeyScheme: newStoreScheme})
	if err != nil {
		s.Close()
		return nil, unmigrated(c, err)
	}
	s.backend, s.calls, s.audit = st, c.deadlines(st), st.AuditStats()
	records, err := cache.New(s.calls, cache.Config{MaxBytes: c.CacheBytes, Partitions: st.Partitions(), Lease: c.Lease})
	if err != nil {
		s.Close()
		return nil, err
	}
	s.records = records
	s.closers = append(s.closers, func() error { records.Close(); return nil })
	// Our own writes drop our cached copy at once; the feed reports them
	// (and everyone else's) in order.
	st.OnChange(func(k consent.Key, _ consent.ConsistencyToken) { records.Drop(k) })
	// The feed keeps one connection per partition blocked in XREAD, so it
	// gets a client, and a pool, of its own.
	feedClient, err := redisClient(c, password, int(c.Partitions)+4)
	if err != nil {
		s.Close()
		return nil, err
	}
	s.closers = append(s.closers, feedClient.Close)
	s.feed = store.NewFeed(feedClient, st.Partitions(), records, store.FeedConfig{Block: c.Lease / 8, Logger: log})
	return s, nil
}

// newStoreScheme is the contact-key scheme a new store records.
const newStoreScheme = string(contactkey.NewStoreScheme)

// unmigrated adds to a store's refusal to serve an unmigrated store the
// command that migrates it, with this consentd's store flags.
func unmigrated(c Config, err error) error {
	if !errors.Is(err, store.ErrUnmigrated) {
		return err
	}
	return fmt.Errorf("%w: stop every consentd that uses it, run `%s` (a dry run: it reports what it would merge), then again with --apply, "+
		"and start this version (docs/migrating-identifiers.md)", err, MigrateCommand(c))
}

// MigrateCommand is the consentctl migrate command line for c's store,
// with a placeholder for the file of contacts the operator supplies. It
// names no password.
func MigrateCommand(c Config) string {
	args := []string{"consentctl", "migrate"}
	add := func(flag, v string) {
		if v != "" {
			args = append(args, "--"+flag, shellQuote(v))
		}
	}
	switch {
	case !c.usesRedis():
		add("data-dir", c.DataDir)
		if c.SecretFile != filepath.Join(c.DataDir, "secret") {
			add("secret-file", c.SecretFile)
		}
	default:
		add("redis", c.RedisURL)
		add("redis-sentinel", c.RedisSentinel)
		add("redis-cluster", c.RedisCluster)
		add("redis-password-file", c.RedisPasswordFile)
		add("secret-file", c.SecretFile)
		if c.Partitions != DefaultConfig().Partitions {
			add("partitions", strconv.FormatUint(uint64(c.Partitions), 10))
		}
	}
	add("default-region", c.DefaultRegion)
	return strings.Join(append(args, "--contacts", "FILE"), " ")
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:,@=+") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// RedisClient builds the Redis client of c's Redis flags, as consentd
// does, for tools that open the store directly (consentctl migrate).
func RedisClient(c Config) (redis.UniversalClient, error) {
	password, err := redisPassword(c)
	if err != nil {
		return nil, err
	}
	return redisClient(c, password, 0)
}

func redisPassword(c Config) (string, error) {
	if c.RedisPasswordFile != "" {
		b, err := os.ReadFile(c.RedisPasswordFile)
		if err != nil {
			return "", fmt.Errorf("redis password: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	return string(c.RedisPassword), nil
}

// redisClient builds the client for whichever Redis flag is set. pool, when
// > 0, sets the connection pool size.
func redisClient(c Config, password string, pool int) (redis.UniversalClient, error) {
	t := c.redisTimeouts()
	switch {
	case c.RedisURL != "":
		o, err := redis.ParseURL(c.RedisURL)
		if err != nil {
			return nil, fmt.Errorf("--redis: %w", err)
		}
		if password != "" {
			o.Password = password
		}
		if pool > 0 {
			o.PoolSize = pool
		}
		o.ContextTimeoutEnabled, o.MaxRetries = true, t.retries
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.PoolTimeout = t.socket, t.socket, t.socket, t.socket
		return redis.NewClient(o), nil
	case c.RedisSentinel != "":
		master, addrs, ok := strings.Cut(c.RedisSentinel, "@")
		if !ok || master == "" || addrs == "" {
			return nil, fmt.Errorf("--redis-sentinel: want MASTER@host:port,..., got %q", c.RedisSentinel)
		}
		return redis.NewFailoverClient(&redis.FailoverOptions{MasterName: master, SentinelAddrs: strings.Split(addrs, ","),
			Password: password, PoolSize: pool, ContextTimeoutEnabled: true, MaxRetries: t.retries,
			DialTimeout: t.socket, ReadTimeout: t.socket, WriteTimeout: t.socket, PoolTimeout: t.socket}), nil
	default:
		return redis.NewClusterClient(&redis.ClusterOptions{Addrs: strings.Split(c.RedisCluster, ","), Password: password, PoolSize: pool,
			ContextTimeoutEnabled: true, MaxRetries: t.retries,
			DialTimeout: t.socket, ReadTimeout: t.socket, WriteTimeout: t.socket, PoolTimeout: t.socket}), nil
	}
}

// redisTimeouts are the go-redis settings that keep a hung Redis from
// holding a call past its deadline. go-redis ignores a context's deadline on
// the socket unless ContextTimeoutEnabled is set; with it, a round trip ends
// at the earlier of the call's deadline and socket, a wait for a pooled
// connection or a dial too. socket also bounds round trips made without a
// deadline (the change feed's reads, a verify walk): it is the longest store
// timeout, so it never cuts a call short of its own. The change feed's XREAD
// BLOCK still works: go-redis gives a blocking command its block time plus
// 10 s on the socket (baseClient.cmdTimeout), and the feed's context has no
// deadline. retries re-sends a command whose pooled connection Redis had
// closed (a restart, a failover); the deadline bounds them all.
type redisTimeouts struct {
	socket  time.Duration
	retries int
}

func (c Config) redisTimeouts() redisTimeouts {
	return redisTimeouts{socket: max(c.StoreReadTimeout, c.StoreWriteTimeout), retries: 2}
}

// waitTimeout is how long WAIT (--redis-wait-replicas) waits for replicas:
// half the write's deadline at most, so a write that waited in vain still
// answers, refused, before the deadline cuts it off.
func (c Config) waitTimeout() time.Duration {
	return min(time.Second, c.StoreWriteTimeout/2)
}

// deadlines is the store st with this configuration's store timeouts.
func (c Config) deadlines(st timedBackend) deadlines {
	return deadlines{store: st, read: c.StoreReadTimeout, write: c.StoreWriteTimeout}
}
