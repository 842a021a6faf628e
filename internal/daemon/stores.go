package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/redis/go-redis/v9"

	consent "github.com/consentd/consentd"
	"github.com/consentd/consentd/cache"
	"github.com/consentd/consentd/chain"
	"github.com/consentd/consentd/server"
	"github.com/consentd/consentd/store"
)

// backend is what serving needs of a store.
type backend interface {
	server.Store
	Get(ctx context.Context, key consent.Key) (consent.Record, error)
	GetMany(ctx context.Context, keys []consent.Key, out []consent.Record) error
	Ping(ctx context.Context) error
	OnChange(func(consent.Key, consent.Token))
	Close() error
}

// stack is a store with its cache and, for Redis, its change feed.
type stack struct {
	kind    string
	backend backend
	records *cache.Cache
	feed    *store.Feed
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
func openStore(ctx context.Context, c config, secretCheck string, ch *chain.Key, log *slog.Logger) (*stack, error) {
	if !c.usesRedis() {
		st, err := store.OpenEmbedded(c.dataDir, ch)
		if err != nil {
			return nil, err
		}
		s := &stack{kind: "embedded", backend: st, closers: []func() error{st.Close}}
		// Writes are local and reported in order: no lease is needed.
		records, err := cache.New(st, cache.Config{MaxBytes: c.cacheBytes, Partitions: 1})
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
	st, err := store.OpenRedis(ctx, rdb, store.RedisConfig{
		Partitions: uint32(c.partitions), SecretCheck: secretCheck, WaitReplicas: c.redisWaitReplicas, Chain: ch})
	if err != nil {
		s.Close()
		return nil, err
	}
	s.backend = st
	warnings, err := st.CheckSettings(ctx)
	if err != nil {
		s.Close()
		return nil, err
	}
	for _, w := range warnings {
		log.Warn("redis setting weakens a guarantee", "detail", w)
	}
	records, err := cache.New(st, cache.Config{MaxBytes: c.cacheBytes, Partitions: st.Partitions(), Lease: c.lease})
	if err != nil {
		s.Close()
		return nil, err
	}
	s.records = records
	s.closers = append(s.closers, func() error { records.Close(); return nil })
	// Our own writes drop our cached copy at once; the feed reports them
	// (and everyone else's) in order.
	st.OnChange(func(k consent.Key, _ consent.Token) { records.Drop(k) })
	// The feed keeps one connection per partition blocked in XREAD, so it
	// gets a client, and a pool, of its own.
	feedClient, err := redisClient(c, password, int(c.partitions)+4)
	if err != nil {
		s.Close()
		return nil, err
	}
	s.closers = append(s.closers, feedClient.Close)
	s.feed = store.NewFeed(feedClient, st.Partitions(), records, store.FeedConfig{Block: c.lease / 8, Logger: log})
	return s, nil
}

func redisPassword(c config) (string, error) {
	if c.redisPasswordFile != "" {
		b, err := os.ReadFile(c.redisPasswordFile)
		if err != nil {
			return "", fmt.Errorf("redis password: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	return c.redisPassword, nil
}

// redisClient builds the client for whichever Redis flag is set. pool, when
// > 0, sets the connection pool size.
func redisClient(c config, password string, pool int) (redis.UniversalClient, error) {
	switch {
	case c.redisURL != "":
		o, err := redis.ParseURL(c.redisURL)
		if err != nil {
			return nil, fmt.Errorf("-redis: %w", err)
		}
		if password != "" {
			o.Password = password
		}
		if pool > 0 {
			o.PoolSize = pool
		}
		return redis.NewClient(o), nil
	case c.redisSentinel != "":
		master, addrs, ok := strings.Cut(c.redisSentinel, "@")
		if !ok || master == "" || addrs == "" {
			return nil, fmt.Errorf("-redis-sentinel: want MASTER@host:port,..., got %q", c.redisSentinel)
		}
		return redis.NewFailoverClient(&redis.FailoverOptions{MasterName: master, SentinelAddrs: strings.Split(addrs, ","),
			Password: password, PoolSize: pool}), nil
	default:
		return redis.NewClusterClient(&redis.ClusterOptions{Addrs: strings.Split(c.redisCluster, ","), Password: password, PoolSize: pool}), nil
	}
}
