package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"

	"github.com/consentd/consentd/consent"
)

// Faults of a Redis store that consentd must not serve. Each is also a
// consent.ErrUnavailable, so the one status mapping answers UNAVAILABLE
// with the error's message. None names a contact.
var (
	// ErrStoreLost: the store is not the one this process opened, or lost
	// keys: wiped, replaced, rolled back, or keys evicted or deleted. It holds
	// for the process: only an operator can restore the data (then restart
	// consentd).
	ErrStoreLost error = &fault{"store lost"}
	// ErrNotInitialised: Redis holds no consentd data and initialising was
	// not asked for.
	ErrNotInitialised error = &fault{"store not initialised"}
	// ErrSettings: a Redis setting the guarantees rest on is wrong, or
	// cannot be read. It clears when the setting is fixed (if no key was
	// lost meanwhile: that is ErrStoreLost).
	ErrSettings error = &fault{"redis settings"}
)

type fault struct{ name string }

func (f *fault) Error() string { return f.name }

func (f *fault) Is(target error) bool { return target == consent.ErrUnavailable }

// faultError is a fault with its own message.
type faultError struct {
	kind error
	msg  string
}

func (e *faultError) Error() string { return e.msg }
func (e *faultError) Unwrap() error { return e.kind }

func faultf(kind error, format string, args ...any) error {
	return &faultError{kind: kind, msg: fmt.Sprintf(format, args...)}
}

// lostHint ends every ErrStoreLost message: what happened and what to do.
const lostHint = "the Redis store was wiped, replaced or rolled back since consentd opened it, or lost keys; " +
	"consentd serves nothing from it until an operator restores it from a backup and restarts consentd"

func lostf(format string, args ...any) error {
	return faultf(ErrStoreLost, "store: redis: "+format+": "+lostHint, args...)
}

// fail keeps the first ErrStoreLost for the process and returns it; other
// errors pass through.
func (s *Redis) fail(err error) error {
	if !errors.Is(err, ErrStoreLost) {
		return err
	}
	s.lost.CompareAndSwap(nil, &err)
	return *s.lost.Load()
}

func (s *Redis) lostErr() error {
	if p := s.lost.Load(); p != nil {
		return *p
	}
	return nil
}

// storeState is what identifies a store, read in one pipeline: the global
// marks and the markers and sequences of partitions parts.
type storeState struct {
	layout, partitions, secret string // "" when absent
	parts                      []uint32
	ids                        []string // by index in parts
	seqs                       []uint64
}

// notMarker stands for a partition marker of the wrong type.
const notMarker = "(not a consentd marker)"

func (s *Redis) allPartitions() []uint32 {
	parts := make([]uint32, s.cfg.Partitions)
	for p := range parts {
		parts[p] = uint32(p)
	}
	return parts
}

func (s *Redis) readState(ctx context.Context, parts []uint32) (*storeState, error) {
	var (
		globals [3]*redis.StringCmd
		ids     = make([]*redis.StringCmd, len(parts))
		seqs    = make([]*redis.StringCmd, len(parts))
	)
	_, err := s.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, k := range []string{layoutKey, partitionsKey, secretKey} {
			globals[i] = pipe.Get(ctx, k)
		}
		for i, p := range parts {
			ids[i] = pipe.HGet(ctx, markerKey(p), "id")
			seqs[i] = pipe.Get(ctx, seqKey(p))
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) && !isWrongType(err) {
		return nil, redisErr(err)
	}
	st := &storeState{parts: parts, ids: make([]string, len(parts)), seqs: make([]uint64, len(parts))}
	for i, v := range []*string{&st.layout, &st.partitions, &st.secret} {
		if *v, err = optional(globals[i]); isWrongType(err) {
			// Redis answered: the key was replaced, which is no outage.
			return nil, lostf("%s holds another type of key", []string{layoutKey, partitionsKey, secretKey}[i])
		} else if err != nil {
			return nil, err
		}
	}
	for i, p := range parts {
		if st.ids[i], err = optional(ids[i]); isWrongType(err) {
			st.ids[i] = notMarker
		} else if err != nil {
			return nil, err
		}
		v, err := optional(seqs[i])
		if isWrongType(err) {
			return nil, lostf("partition %d's sequence %s holds another type of key", p, seqKey(p))
		} else if err != nil {
			return nil, err
		}
		if v != "" {
			if st.seqs[i], err = strconv.ParseUint(v, 10, 64); err != nil {
				return nil, lostf("partition %d's sequence %s is not a number", p, seqKey(p))
			}
		}
	}
	return st, nil
}

// optional returns a string reply, "" for a missing key.
func optional(c *redis.StringCmd) (string, error) {
	v, err := c.Result()
	switch {
	case errors.Is(err, redis.Nil):
		return "", nil
	case isWrongType(err):
		return "", err
	case err != nil:
		return "", redisErr(err)
	}
	return v, nil
}

func isWrongType(err error) bool { return err != nil && strings.HasPrefix(err.Error(), "WRONGTYPE") }

// identify recognises the store OpenRedis was given, or initialises a new
// one when cfg.Init says so.
func (s *Redis) identify(ctx context.Context) error {
	st, err := s.readState(ctx, s.allPartitions())
	if err != nil {
		return err
	}
	if st.layout == "" {
		if s.cfg.Migrating {
			return faultf(ErrNotInitialised, "store: redis: no consentd store in this Redis (no %s): nothing to migrate", layoutKey)
		}
		return s.unmarked(ctx, st)
	}
	layout, rest, _ := strings.Cut(st.layout, "/")
	switch {
	case layout == redisLegacyLayout && !s.cfg.Migrating:
		return &UnmigratedError{Store: "the Redis store (" + layoutKey + ")", Layout: layout}
	case layout == redisLegacyLayout:
		// A stamp cut short gave some markers the current layout's id:
		// every merge of the migration that began it was applied before
		// it, and the next StampLayout finishes it. Until then each
		// partition is written with the id its marker holds.
		s.id, s.scheme, s.legacy, s.stamped = rest, LegacyKeyScheme, true, make([]bool, s.cfg.Partitions)
		for i, p := range st.parts {
			s.stamped[p] = st.ids[i] == redisLayout+"/"+s.id
		}
	case layout == redisLayout:
		id, scheme, ok := strings.Cut(rest, "/")
		if !ok || scheme == "" {
			return lostf("%s does not name the contact-key scheme", layoutKey)
		}
		s.id, s.scheme = id, scheme
	default:
		return fmt.Errorf("store: redis: the data has layout %q (%s), this consentd writes %q: use a new Redis database", layout, layoutKey, redisLayout)
	}
	if err := s.judgeIdentity(ctx, st, nil); err != nil {
		return err
	}
	if s.cfg.Init {
		return fmt.Errorf("store: redis: the store is already initialised (%s): remove --redis-init, which is for the first start of a new deployment only", layoutKey)
	}
	if err := s.checkAlike(st.partitions, st.secret); err != nil {
		return err
	}
	if s.cfg.WaitReplicas <= 0 {
		// With WAIT, what is on the master may not be acknowledged (see
		// CheckIdentity): the floor then rises only with this process's
		// own acknowledged writes.
		for p, seq := range st.seqs {
			s.seen[p].Store(seq)
		}
	}
	return nil
}

// KeyScheme returns the contact-key scheme the store's contacts are keyed
// with (contactkey.Scheme): the one its layout names, LegacyKeyScheme on a
// legacy store.
func (s *Redis) KeyScheme() string { return s.scheme }

// Migrated reports whether the store has the current layout.
func (s *Redis) Migrated() bool { return !s.legacy }

// stampScript moves one partition marker from the legacy layout's id to
// the current one's: unless it holds neither (another store's, or none).
var stampScript = redis.NewScript(`
local id = redis.pcall('HGET', KEYS[1], 'id')
if id == ARGV[2] then return 1 end
if id ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'id', ARGV[2])
return 1
`)

// StampLayout gives a legacy store opened with RedisConfig.Migrating the
// current layout, with the contact-key scheme cfg.KeyScheme: every
// partition marker first, so sidecars of the previous version still
// running stop writing as early as can be, then the layout mark, so the
// current version serves the store only once every marker is stamped. Run
// again after it was cut short, it finishes. On a store of the current
// layout it does nothing. It must not run beside writes of this Redis.
func (s *Redis) StampLayout(ctx context.Context) error {
	if !s.legacy {
		return nil
	}
	scheme := s.cfg.KeyScheme
	if scheme == "" {
		scheme = LegacyKeyScheme
	}
	mark := redisLayout + "/" + s.id
	for p := range s.cfg.Partitions {
		n, err := stampScript.Run(ctx, s.rdb, []string{markerKey(p)}, s.id, mark).Int()
		if err != nil {
			return redisErr(err)
		}
		if n != 1 {
			return lostf("partition %d's marker %s holds another store's id on %s; nothing stamped after it", p, markerKey(p), s.nodeName(ctx, markerKey(p)))
		}
	}
	ok, err := layoutStampScript.Run(ctx, s.rdb, []string{layoutKey}, redisLegacyLayout+"/"+s.id, redisLayout+"/"+s.id+"/"+scheme).Int()
	if err != nil {
		return redisErr(err)
	}
	if ok != 1 {
		return lostf("%s holds another store's mark on %s", layoutKey, s.nodeName(ctx, layoutKey))
	}
	s.scheme, s.legacy = scheme, false
	return nil
}

// layoutStampScript replaces the legacy layout mark with the current one,
// only if it is still this store's legacy mark.
var layoutStampScript = redis.NewScript(`
local got = redis.call('GET', KEYS[1])
if got == ARGV[2] then return 1 end
if got ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
return 1
`)

// checkAlike refuses a sidecar configured unlike the deployment.
func (s *Redis) checkAlike(partitions, secret string) error {
	for _, c := range []struct{ key, got, want, what string }{
		{partitionsKey, partitions, strconv.FormatUint(uint64(s.cfg.Partitions), 10), "partition count"},
		{secretKey, secret, s.cfg.SecretCheck, "contact-key secret"},
	} {
		if c.got != c.want {
			return fmt.Errorf("store: this sidecar's %s differs from the one the deployment in Redis uses (%s): every sidecar must be configured alike", c.what, c.key)
		}
	}
	return nil
}

// unmarked handles a Redis without the layout mark: new, partly wiped, or
// an initialisation that did not finish.
func (s *Redis) unmarked(ctx context.Context, st *storeState) error {
	for p, seq := range st.seqs {
		if seq > 0 {
			return lostf("%s is missing but partition %d holds data (%s is %d)", layoutKey, st.parts[p], seqKey(st.parts[p]), seq)
		}
	}
	begun := st.partitions != "" || st.secret != ""
	for _, id := range st.ids {
		begun = begun || id != ""
	}
	if begun {
		// Initialisation writes the layout mark last.
		return faultf(ErrNotInitialised, "store: redis: an initialisation of this Redis is under way in another consentd, or was interrupted "+
			"(partition markers without %s, and no data): if no consentd is initialising it, empty this database and start one consentd once with --redis-init", layoutKey)
	}
	keys, err := s.dbSize(ctx)
	if err != nil {
		return err
	}
	if !s.cfg.Init {
		return faultf(ErrNotInitialised, "store: redis: no consentd store in this Redis (no %s): if this is a new deployment, start one consentd once with --redis-init; "+
			"if the store was wiped or replaced, restore it from a backup (do not initialise a store that should hold data)", layoutKey)
	}
	if keys > 0 {
		return fmt.Errorf("store: redis: --redis-init on a database that holds %d keys but no consentd store: consentd initialises only an empty database, dedicated to it "+
			"(if these are a wiped store's remains, restore it from a backup instead)", keys)
	}
	return s.initialise(ctx)
}

// dbSize counts the keys of the database on every master.
func (s *Redis) dbSize(ctx context.Context) (int64, error) {
	var total atomic.Int64
	err := s.forEachNode(ctx, func(ctx context.Context, node *redis.Client) error {
		n, err := node.DBSize(ctx).Result()
		total.Add(n)
		return err
	})
	if err != nil {
		return 0, redisErr(err)
	}
	return total.Load(), nil
}

// initScript marks one partition of a new store, unless something already
// did: another consentd initialising at the same time.
var initScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1], KEYS[2]) > 0 then return 0 end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'keys', 0)
return 1
`)

// initialise writes a new store's configuration, its partition markers and,
// last, the layout mark with the store id: a store whose initialisation
// was cut short has no mark, and is never taken for one with data.
func (s *Redis) initialise(ctx context.Context) error {
	concurrent := fmt.Errorf("store: redis: another consentd initialised this Redis at the same time: give --redis-init to one consentd, once")
	id := newStoreID()
	for _, kv := range [][2]string{
		{partitionsKey, strconv.FormatUint(uint64(s.cfg.Partitions), 10)},
		{secretKey, s.cfg.SecretCheck},
	} {
		ok, err := s.rdb.SetNX(ctx, kv[0], kv[1], 0).Result()
		if err != nil {
			return redisErr(err)
		}
		if !ok {
			return concurrent
		}
	}
	for p := range s.cfg.Partitions {
		n, err := initScript.Run(ctx, s.rdb, []string{markerKey(p), seqKey(p)}, redisLayout+"/"+id).Int()
		if err != nil {
			return redisErr(err)
		}
		if n != 1 {
			return concurrent
		}
	}
	scheme := s.cfg.KeyScheme
	if scheme == "" {
		scheme = LegacyKeyScheme
	}
	ok, err := s.rdb.SetNX(ctx, layoutKey, redisLayout+"/"+id+"/"+scheme, 0).Result()
	if err != nil {
		return redisErr(err)
	}
	if !ok {
		return concurrent
	}
	s.id, s.scheme = id, scheme
	return nil
}

// checkWindow is the most partitions one CheckIdentity reads: its cost
// must not grow with the partition count (65536 partitions read at once
// took ~710 ms, more than the guard allows a check).
const checkWindow = 256

// CheckIdentity checks, in one pipeline per node, that Redis still holds
// the store this process opened: the layout mark holds its store id, the
// deployment's configuration is there, and, for a window of at most
// checkWindow partitions, each marker holds the store id and no sequence
// is lower than the floor this process knows (a rollback, or a restore of
// an older copy). The window rotates, so every partition is checked within
// ceil(P/256) calls (at the guard's 500 ms, 128 s for 65536 partitions,
// 8 s for 4096, every call up to 256); on a Cluster each call also reads
// one partition of every master, so a master wiped alone (FLUSHALL, or
// replaced by an empty one) is found by the next call whatever the window.
// It returns nil; an error wrapping consent.ErrUnavailable when Redis does
// not answer (transient); or one wrapping ErrStoreLost naming what is
// wrong, which holds for the process.
//
// The floor: without WAIT (RedisConfig.WaitReplicas 0) a write is
// acknowledged once it is on the master, so every sequence read raises it.
// With WAIT a write is acknowledged only once replicas confirmed it, and a
// master cut off from its replicas still applies writes that each fail
// WAIT; a failover then rightly drops them. So the floor rises only with
// this process's own writes that WAIT confirmed, never from reads: else
// every sidecar would latch ErrStoreLost though nothing acknowledged was
// lost. What stays unseen either way: after a rollback by k writes (a
// failover to a replica that missed them), k new writes bring the sequence
// back to the floor before a check reads it; WAIT narrows that to writes
// no replica confirmed.
func (s *Redis) CheckIdentity(ctx context.Context) error {
	if err := s.lostErr(); err != nil {
		return err
	}
	parts, err := s.checkParts(ctx)
	if err != nil {
		return s.fail(unavailable(err))
	}
	// Any sequence seen before the read is sent must be no higher than the
	// one read: writes only move them up.
	floor := make([]uint64, len(parts))
	for i, p := range parts {
		floor[i] = s.seen[p].Load()
	}
	st, err := s.readState(ctx, parts)
	if err != nil {
		return s.fail(unavailable(err))
	}
	if err := s.judgeIdentity(ctx, st, floor); err != nil {
		return s.fail(err)
	}
	if err := s.checkAlike(st.partitions, st.secret); err != nil {
		return s.fail(lostf("the deployment's configuration changed in Redis (%v)", err))
	}
	if s.cfg.WaitReplicas <= 0 {
		for i, p := range parts {
			s.raise(p, st.seqs[i])
		}
	}
	return nil
}

// checkCursor is where CheckIdentity's window stands.
type checkCursor struct {
	mu   sync.Mutex
	next uint32
	// anchors are one partition on each Cluster master, found again at
	// the start of every round of the window (slots may move meanwhile).
	anchors []uint32
}

// checkParts returns the partitions this call of CheckIdentity reads: the
// next window, and on a Cluster one partition of every master.
func (s *Redis) checkParts(ctx context.Context) ([]uint32, error) {
	n := s.cfg.Partitions
	if n <= checkWindow {
		return s.allPartitions(), nil
	}
	c := &s.checks
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.next == 0 || c.anchors == nil {
		anchors, err := s.anchors(ctx)
		if err != nil {
			return nil, err
		}
		c.anchors = anchors
	}
	parts := make([]uint32, 0, checkWindow+len(c.anchors))
	in := map[uint32]bool{}
	for i := range uint32(checkWindow) {
		p := (c.next + i) % n
		parts = append(parts, p)
		in[p] = true
	}
	for _, p := range c.anchors {
		if !in[p] {
			parts = append(parts, p)
		}
	}
	c.next = (c.next + checkWindow) % n
	return parts, nil
}

// anchors returns one partition served by each Cluster master (none on a
// standalone server), from CLUSTER SLOTS.
func (s *Redis) anchors(ctx context.Context) ([]uint32, error) {
	cc, ok := s.rdb.(*redis.ClusterClient)
	if !ok {
		return []uint32{}, nil
	}
	ranges, err := cc.ClusterSlots(ctx).Result()
	if err != nil {
		return nil, redisErr(err)
	}
	first := make(map[int]uint32, len(s.audit.partSlots))
	for p := len(s.audit.partSlots) - 1; p >= 0; p-- {
		first[s.audit.partSlots[p]] = uint32(p)
	}
	anchors := []uint32{}
	for _, r := range ranges {
		for slot := r.Start; slot <= r.End; slot++ {
			if p, ok := first[slot]; ok {
				anchors = append(anchors, p)
				break
			}
		}
	}
	return anchors, nil
}

// judgeIdentity compares the markers with the store id and, when floor is
// given, the sequences with it. It names up to three problems.
func (s *Redis) judgeIdentity(ctx context.Context, st *storeState, floor []uint64) error {
	var problems []string
	if want := s.layoutMark(); st.layout != want {
		if st.layout == "" {
			problems = append(problems, fmt.Sprintf("%s is missing on %s", layoutKey, s.nodeName(ctx, layoutKey)))
		} else {
			problems = append(problems, fmt.Sprintf("%s holds another store's mark on %s", layoutKey, s.nodeName(ctx, layoutKey)))
		}
	}
	for i, p := range st.parts {
		switch id := st.ids[i]; {
		case id == "":
			problems = append(problems, fmt.Sprintf("partition %d's marker %s is missing on %s", p, markerKey(p), s.nodeName(ctx, markerKey(p))))
		case id != s.markerID(p):
			problems = append(problems, fmt.Sprintf("partition %d's marker %s holds another store's id on %s", p, markerKey(p), s.nodeName(ctx, markerKey(p))))
		case floor != nil && st.seqs[i] < floor[i]:
			problems = append(problems, fmt.Sprintf("partition %d's sequence %s went back from %d to %d on %s", p, seqKey(p), floor[i], st.seqs[i], s.nodeName(ctx, seqKey(p))))
		}
	}
	if len(problems) == 0 {
		return nil
	}
	if len(problems) > 3 {
		problems = append(problems[:3], fmt.Sprintf("%d more", len(problems)-3))
	}
	return lostf("%s", strings.Join(problems, "; "))
}

// layoutMark is what the layout mark holds while this process serves.
func (s *Redis) layoutMark() string {
	if s.legacy {
		return redisLegacyLayout + "/" + s.id
	}
	return redisLayout + "/" + s.id + "/" + s.scheme
}

// raise records that partition p's sequence reached seq.
func (s *Redis) raise(p uint32, seq uint64) {
	for {
		old := s.seen[p].Load()
		if seq <= old || s.seen[p].CompareAndSwap(old, seq) {
			return
		}
	}
}

// unavailable marks any failure of a periodic check as transient: the
// check could not be made. A canceled context stays what it is.
func unavailable(err error) error {
	if err == nil || errors.Is(err, consent.ErrUnavailable) || errors.Is(err, context.Canceled) {
		return err
	}
	return fmt.Errorf("%w: %v", consent.ErrUnavailable, err)
}

// nodeName names the master that holds key, for messages.
func (s *Redis) nodeName(ctx context.Context, key string) string {
	node, err := nodeFor(ctx, s.rdb, key)
	if err != nil {
		return "an unknown node"
	}
	return addrOf(ctx, node)
}

// addrOf names a node by its address. A Sentinel client's is the master it
// follows now: the server's end of the connection (CLIENT INFO laddr).
func addrOf(ctx context.Context, node *redis.Client) string {
	if a := node.Options().Addr; a != "FailoverClient" {
		return a
	}
	if info, err := node.ClientInfo(ctx).Result(); err == nil && info.LAddr != "" {
		return info.LAddr
	}
	return "the Sentinel master"
}
