package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/consentd/consentd/consent"
	"github.com/consentd/consentd/internal/chain"
)

// Redis layout. Every key of a contact carries its partition's hash tag, so
// one script touches one slot and the same code runs on Redis Cluster:
//
//	{p}:s            partition sequence (INCR)
//	{p}:c            partition chain head: the link (package chain) of event {p}:s
//	{p}:f            change stream: one entry "<seq>-0" {k: contact key} per write
//	{p}:i            partition marker, a hash: id, redisLayout + "/" + the store
//	                 id (every write checks it); keys, how many persistent keys
//	                 the write script has created in the partition (records,
//	                 histories)
//	{p}:r:<key>      record: "<seq>:" + EncodeRecord(record without token)
//	{p}:h:<key>      history list: "<seq>:" + chain entry of EncodeEvent(event without token)
//	{p}:q:<key><id>  request id (consent.Write.RequestName): fingerprint + "<seq>", expiring
//	{q}:k:<name>     a caller's request id bound to its request (redis_claim.go), expiring
//	consentd:partitions    the deployment's partition count
//	consentd:secret-check  a value derived from the contact-key secret
//	consentd:layout        redisLayout + "/" + the store id + "/" + the contact-key scheme
//
// The contact-key scheme (contactkey.Scheme) is how contact keys are made
// from canonical identifiers: every sidecar keys contacts with the scheme
// the store names, so a key rotation can come later.
//
// The legacy layout, chain-v2 (before issue 17), differed in two marks: the
// layout mark was chain-v2/<store id>, and a partition marker's id the bare
// store id. Its contacts were keyed by the raw string, so it is
// "unmigrated": only consentctl migrate opens it (RedisConfig.Migrating),
// and it stamps the new marks last (StampLayout). Sidecars of the old
// version still running then find markers that are not their store's and
// refuse to write.
//
// Contact keys are the raw 32 bytes of the keyed hash. Only initialisation
// (RedisConfig.Init) creates the markers and the layout mark; nothing
// recreates them, so a store that lost them stays lost (redis_identity.go).
const (
	partitionsKey = "consentd:partitions"
	secretKey     = "consentd:secret-check"
	layoutKey     = "consentd:layout"
	// redisLayout names the layout above. Data written in another (by a
	// development version before the history was chained, or before the
	// store had an identity) is refused, not extended into a history that
	// verifies nowhere.
	redisLayout = "chain-v3"
	// redisLegacyLayout is the layout of stores written before issue 17.
	redisLegacyLayout = "chain-v2"
)

// RedisConfig tunes the Redis store.
type RedisConfig struct {
	// Partitions is fixed per deployment: every sidecar must agree, and the
	// first one to start records it in Redis.
	Partitions uint32
	// SecretCheck identifies the contact-key secret (contactkey.Keyer.Check).
	// Sidecars with different secrets would key the same contact apart, so
	// the first one records it and the others must match.
	SecretCheck string
	// WaitReplicas, when > 0, acknowledges a write only after WAIT reports
	// that many replicas have it.
	WaitReplicas int
	WaitTimeout  time.Duration
	// RequestTTL is how long request ids are remembered for idempotency.
	RequestTTL time.Duration
	// FeedMaxLen caps each change stream (approximately); a sidecar that
	// falls further behind than this flushes its cache.
	FeedMaxLen int64
	// Chain seals the history's links (required): every sidecar derives it
	// from the same secret.
	Chain *chain.Key
	// Init initialises a Redis that holds no consentd data: for the first
	// start of a new deployment only. Without it such a Redis is refused
	// (ErrNotInitialised): it may be a store that was wiped or replaced.
	// With it, a store already initialised is refused too, so a flag left
	// in place can never re-initialise a wiped store.
	Init bool
	// KeyScheme is the contact-key scheme (contactkey.Scheme) Init
	// records in a new store; "" is LegacyKeyScheme. A store already
	// initialised keeps its own: Redis.KeyScheme says which.
	KeyScheme string
	// Migrating opens a store of the legacy layout too, for consentctl
	// migrate, which re-keys its contacts and then stamps the current layout
	// with KeyScheme (StampLayout). It never initialises a store.
	Migrating bool
	// OperatorChecksSettings says the operator, not consentd, checks the
	// Redis settings the guarantees rest on, where CONFIG is renamed or
	// denied. Audit then skips them, and where INFO is denied too it checks
	// nothing (CheckIdentity still runs).
	OperatorChecksSettings bool
}

func (c *RedisConfig) defaults() {
	if c.Partitions == 0 {
		c.Partitions = 16
	}
	if c.WaitTimeout == 0 {
		c.WaitTimeout = time.Second
	}
	if c.RequestTTL == 0 {
		c.RequestTTL = 7 * 24 * time.Hour
	}
	if c.FeedMaxLen == 0 {
		c.FeedMaxLen = 100000
	}
}

// Redis is the shared store of record.
type Redis struct {
	rdb      redis.UniversalClient
	cfg      RedisConfig
	onChange func(consent.Key, consent.ConsistencyToken)
	// writing serialises this process's writes to each partition: each
	// extends the partition's chain, so concurrent ones would only make each
	// other retry. Other sidecars' writes are caught by the script's check.
	// A semaphore, not a mutex, so a caller whose deadline passes while
	// it waits gives up.
	writing []chan struct{}
	// id is the store id, named by the layout mark and the markers.
	id string
	// scheme is the store's contact-key scheme; legacy says the store has
	// the legacy layout (opened by consentctl migrate), and stamped which
	// of its partition markers a stamp cut short gave the current one.
	scheme  string
	legacy  bool
	stamped []bool
	// seen is each partition's floor: the highest sequence this process
	// knows was acknowledged (see CheckIdentity); one lower later means
	// Redis went back in time.
	seen []atomic.Uint64
	// lost is the first ErrStoreLost found: it holds for the process.
	lost   atomic.Pointer[error]
	audit  auditor
	checks checkCursor
}

// OpenRedis checks the Redis settings, the store's identity and the
// deployment's configuration (or initialises a new store when cfg.Init
// says so) and returns the store. The client is the caller's: Close does not
// close it.
func OpenRedis(ctx context.Context, rdb redis.UniversalClient, cfg RedisConfig) (*Redis, error) {
	cfg.defaults()
	if cfg.Chain == nil {
		return nil, errors.New("store: redis: no chain key")
	}
	s := &Redis{rdb: rdb, cfg: cfg, onChange: func(consent.Key, consent.ConsistencyToken) {},
		writing: make([]chan struct{}, cfg.Partitions), seen: make([]atomic.Uint64, cfg.Partitions)}
	for p := range s.writing {
		s.writing[p] = make(chan struct{}, 1)
	}
	// Settings first: a Redis that may drop keys is neither initialised
	// nor served.
	if err := s.openAudit(ctx); err != nil {
		return nil, err
	}
	if err := s.identify(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// StoreID returns the id of the store, made when it was initialised and kept
// in its layout mark and partition markers: every sidecar of the deployment
// reads the same, and a wiped and re-initialised Redis has another.
func (s *Redis) StoreID() string { return s.id }

// Partitions returns the deployment's partition count.
func (s *Redis) Partitions() uint32 { return s.cfg.Partitions }

// OnChange sets the function told of each write this process applies, after
// Redis acknowledged it and before Apply returns. Other sidecars' writes
// arrive through a Feed.
func (s *Redis) OnChange(fn func(consent.Key, consent.ConsistencyToken)) { s.onChange = fn }

// Ping reports whether Redis answers.
func (s *Redis) Ping(ctx context.Context) error {
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return redisErr(err)
	}
	return nil
}

// Close releases nothing: the client belongs to the caller.
func (s *Redis) Close() error { return nil }

// markerID is what every write and check compares partition p's marker's
// id with: redisLayout + "/" + the store id, or the bare id on a legacy
// store opened to be migrated, for a partition not stamped yet.
func (s *Redis) markerID(p uint32) string {
	if s.legacy && !s.stamped[p] {
		return s.id
	}
	return redisLayout + "/" + s.id
}

func tag(p uint32) string { return "{" + strconv.FormatUint(uint64(p), 10) + "}" }

func recordKey(p uint32, k consent.Key) string  { return tag(p) + ":r:" + string(k[:]) }
func historyKey(p uint32, k consent.Key) string { return tag(p) + ":h:" + string(k[:]) }
func requestKey(p uint32, k consent.Key, id string) string {
	return tag(p) + ":q:" + string(k[:]) + id
}
func seqKey(p uint32) string    { return tag(p) + ":s" }
func headKey(p uint32) string   { return tag(p) + ":c" }
func feedKey(p uint32) string   { return tag(p) + ":f" }
func markerKey(p uint32) string { return tag(p) + ":i" }

// RecordKey is the Redis key of a contact's record in a deployment of
// partitions partitions: for tools that read Redis directly (the benchmark's
// baseline of a sender doing without consentd).
func RecordKey(partitions uint32, k consent.Key) string { return recordKey(k.Partition(partitions), k) }

// Get returns the contact's record; an unknown contact has the zero record.
func (s *Redis) Get(ctx context.Context, key consent.Key) (consent.Record, error) {
	p := key.Partition(s.cfg.Partitions)
	v, err := s.rdb.Get(ctx, recordKey(p, key)).Bytes()
	if errors.Is(err, redis.Nil) {
		return consent.Record{}, nil
	}
	if err != nil {
		return consent.Record{}, redisErr(err)
	}
	rec, _, err := decodeStoredRecord(p, v)
	return rec, err
}

// GetMany reads many records in one pipeline (on a Cluster, one per node,
// in parallel). A key with no record gets the empty record.
func (s *Redis) GetMany(ctx context.Context, keys []consent.Key, out []consent.Record) error {
	if len(out) != len(keys) {
		return errors.New("store: GetMany needs as many outputs as keys")
	}
	if len(keys) == 0 {
		return nil
	}
	cmds := make([]*redis.StringCmd, len(keys))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, key := range keys {
			cmds[i] = p.Get(ctx, recordKey(key.Partition(s.cfg.Partitions), key))
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return redisErr(err)
	}
	for i, cmd := range cmds {
		v, err := cmd.Bytes()
		if errors.Is(err, redis.Nil) {
			out[i] = consent.Record{}
			continue
		}
		if err != nil {
			return redisErr(err)
		}
		if out[i], _, err = decodeStoredRecord(keys[i].Partition(s.cfg.Partitions), v); err != nil {
			return err
		}
	}
	return nil
}

func decodeStoredRecord(p uint32, v []byte) (consent.Record, uint64, error) {
	seq, rest, err := splitSeq(v)
	if err != nil {
		return consent.Record{}, 0, err
	}
	rec, err := DecodeRecord(rest)
	rec.Token = consent.ConsistencyToken{Partition: p, Seq: seq}
	return rec, seq, err
}

// splitSeq splits "<seq>:<bytes>".
func splitSeq(v []byte) (uint64, []byte, error) {
	i := 0
	for i < len(v) && v[i] >= '0' && v[i] <= '9' {
		i++
	}
	if i == 0 || i == len(v) || v[i] != ':' {
		return 0, nil, errCorrupt
	}
	seq, err := strconv.ParseUint(string(v[:i]), 10, 64)
	if err != nil {
		return 0, nil, errCorrupt
	}
	return seq, v[i+1:], nil
}

// replicated runs write and, when replicas are asked for, WAITs on the same
// connection: WAIT counts only the writes of its own connection.
func (s *Redis) replicated(ctx context.Context, redisKey string, write func(redis.Cmdable) (consent.ConsistencyToken, error)) (consent.ConsistencyToken, error) {
	if s.cfg.WaitReplicas <= 0 {
		tok, err := write(s.rdb)
		return tok, redisErr(err)
	}
	node, err := nodeFor(ctx, s.rdb, redisKey)
	if err != nil {
		return consent.ConsistencyToken{}, err
	}
	conn := node.Conn()
	defer conn.Close()
	tok, err := write(conn)
	if err != nil {
		return consent.ConsistencyToken{}, redisErr(err)
	}
	n, err := conn.Wait(ctx, s.cfg.WaitReplicas, s.cfg.WaitTimeout).Result()
	if err != nil {
		return consent.ConsistencyToken{}, redisErr(err)
	}
	if n < int64(s.cfg.WaitReplicas) {
		return consent.ConsistencyToken{}, fmt.Errorf("%w: write applied but acknowledged by %d of %d replicas", consent.ErrUnavailable, n, s.cfg.WaitReplicas)
	}
	return tok, nil
}

func replayed(p uint32, v []byte, fp [32]byte) (consent.ConsistencyToken, error) {
	if len(v) <= len(fp) {
		return consent.ConsistencyToken{}, errCorrupt
	}
	if string(v[:len(fp)]) != string(fp[:]) {
		return consent.ConsistencyToken{}, consent.Invalid("request_id", "was already used for a different request")
	}
	seq, err := strconv.ParseUint(string(v[len(fp):]), 10, 64)
	if err != nil {
		return consent.ConsistencyToken{}, errCorrupt
	}
	return consent.ConsistencyToken{Partition: p, Seq: seq}, nil
}

// nodeFor returns the client of the master that holds key: rdb itself, or
// on Cluster the master of key's slot. Node-scoped commands (WAIT, INFO) must
// go there.
func nodeFor(ctx context.Context, rdb redis.UniversalClient, key string) (*redis.Client, error) {
	switch c := rdb.(type) {
	case *redis.ClusterClient:
		m, err := c.MasterForKey(ctx, key)
		if err != nil {
			return nil, redisErr(err)
		}
		return m, nil
	case *redis.Client:
		return c, nil
	}
	return nil, fmt.Errorf("store: unsupported redis client %T", rdb)
}

// Events returns up to limit events of the contact after the one whose token
// is after, oldest first, and whether more follow.
func (s *Redis) Events(ctx context.Context, key consent.Key, after consent.ConsistencyToken, limit int) ([]consent.Event, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	p := key.Partition(s.cfg.Partitions)
	items, err := s.rdb.LRange(ctx, historyKey(p, key), 0, -1).Result()
	if err != nil {
		return nil, false, redisErr(err)
	}
	var out []consent.Event
	for _, item := range items {
		seq, rest, err := splitSeq([]byte(item))
		if err != nil {
			return nil, false, err
		}
		if after.Partition == p && seq <= after.Seq {
			continue
		}
		if len(out) == limit {
			return out, true, nil
		}
		e, err := decodeStoredEvent(rest)
		if err != nil {
			return nil, false, err
		}
		e.Token = consent.ConsistencyToken{Partition: p, Seq: seq}
		out = append(out, e)
	}
	return out, false, nil
}

// redisErr marks failures to reach Redis as consent.ErrUnavailable, so they
// become UNAVAILABLE (never an answer) at the boundary. Context errors stay
// what they are.
func redisErr(err error) error {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, errConflict) || errors.Is(err, errCorrupt) || errors.Is(err, consent.ErrInvalid) ||
		errors.Is(err, consent.ErrUnavailable) {
		return err
	}
	var netErr net.Error
	msg := err.Error()
	switch {
	case errors.As(err, &netErr), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, redis.ErrClosed), errors.Is(err, redis.ErrPoolTimeout),
		strings.HasPrefix(msg, "LOADING"), strings.HasPrefix(msg, "CLUSTERDOWN"),
		strings.HasPrefix(msg, "TRYAGAIN"), strings.HasPrefix(msg, "MASTERDOWN"),
		strings.HasPrefix(msg, "READONLY"), strings.Contains(msg, "connection refused"),
		// A slot still moving after the client's redirects (a Cluster whose
		// topology is changing): the write was not applied, and sent again
		// with its request id it is safe; not an answer, not a bug.
		strings.HasPrefix(msg, "MOVED "), strings.HasPrefix(msg, "ASK "):
		return fmt.Errorf("%w: %v", consent.ErrUnavailable, err)
	}
	return fmt.Errorf("store: redis: %w", err)
}

// newStoreID returns a random store id.
func newStoreID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
