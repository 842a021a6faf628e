// Package cache keeps whole per-contact records in memory (ristretto) in front
// of a store, so a Check that hits costs a hash lookup. It never caches
// decisions: purpose, entitlement and expiry are evaluated after the lookup.
//
// Staleness is ruled out by generations, not by timing. Keys are spread over
// stripes, each with a counter that Invalidate bumps before it deletes; an
// entry remembers the counter it was filled under and is used only while that
// counter is unchanged. This closes ristretto's fill race (a Set is applied
// asynchronously, a Del at once, so a miss that read the old record could
// otherwise land after the invalidation) and makes a logical flush (Flush) a
// single atomic increment.
package cache

import (
	"context"
	"encoding/binary"
	"errors"
	"math"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/dgraph-io/ristretto/v2"
	"golang.org/x/sync/singleflight"

	"github.com/consentd/consentd/consent"
)

// Backend is what the cache needs of a store.
type Backend interface {
	Get(ctx context.Context, key consent.Key) (consent.Record, error)
	// GetMany reads the records of keys into out (same length) in one
	// round trip: an audience's misses cost one pipeline, not one each.
	GetMany(ctx context.Context, keys []consent.Key, out []consent.Record) error
}

// Config sizes the cache.
type Config struct {
	// MaxBytes bounds the estimated size of cached records; 0 disables
	// caching (every read goes to the backend).
	MaxBytes int64
	// Partitions is the number of partitions tokens may name (1 for the
	// embedded store).
	Partitions uint32
	// Lease, when > 0, bounds how long a partition's cached records may be
	// used after its last fence (see Fence): with a change feed that can be
	// cut, this is what keeps a missed invalidation from living forever.
	// 0 means invalidations are synchronous (the embedded store).
	Lease time.Duration
	Now   func() time.Time

	// ristrettoMetrics turns on ristretto's own statistics, which cost
	// every Get and Set a counter update: only tests set it, to check the
	// cache's counters against ristretto's.
	ristrettoMetrics bool
}

const stripes = 1 << 12

// Cache is a read-through cache of records. It is safe for concurrent use.
type Cache struct {
	backend Backend
	rc      *ristretto.Cache[uint64, *entry] // nil when disabled
	gens    [stripes]atomic.Uint64
	epoch   atomic.Uint64
	applied []atomic.Uint64 // per partition: highest sequence invalidated
	fences  []atomic.Int64  // per partition: the last fence, as monotonic nanoseconds since base
	base    time.Time       // carries a monotonic reading: wall-clock steps do not move fences
	parts   uint32
	lease   time.Duration
	now     func() time.Time
	flights singleflight.Group
	stats   Stats

	// afterRead, when set by tests, runs between a miss's backend read and
	// its insert: the window of the fill race.
	afterRead func(consent.Key)
}

// Stats are counters for metrics.
type Stats struct {
	Hits, Misses, RejectedFills, Flushes atomic.Uint64
	// Evictions counts records dropped to make room for others: a cache
	// too small for its working set shows here, not in invalidations.
	Evictions atomic.Uint64
}

type entry struct {
	key   consent.Key
	gen   uint64
	epoch uint64
	rec   consent.Record
}

// New returns a cache over backend. Close it to stop ristretto's goroutines.
func New(backend Backend, cfg Config) (*Cache, error) {
	if cfg.Partitions == 0 {
		cfg.Partitions = 1
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	c := &Cache{backend: backend, applied: make([]atomic.Uint64, cfg.Partitions),
		fences: make([]atomic.Int64, cfg.Partitions), parts: cfg.Partitions, lease: cfg.Lease, now: cfg.Now, base: cfg.Now()}
	for i := range c.fences {
		c.fences[i].Store(math.MinInt64) // never fenced: with a lease, nothing cached is used yet
	}
	if cfg.MaxBytes <= 0 {
		return c, nil
	}
	rc, err := ristretto.NewCache(&ristretto.Config[uint64, *entry]{
		// Ten counters per expected entry, as ristretto advises; records
		// average a few hundred bytes.
		NumCounters:        max(cfg.MaxBytes/25, 1000),
		MaxCost:            cfg.MaxBytes,
		BufferItems:        64,
		IgnoreInternalCost: true,
		// The key is already a keyed hash; entries carry the full key, so a
		// collision of these 64 bits is a miss, never another contact.
		KeyToHash: func(k uint64) (uint64, uint64) { return k, 0 },
		// Evictions are counted here rather than read from ristretto's
		// Metrics (KeysEvicted): those cost every Get and Set an extra
		// counter update on the hot path, while OnEvict runs only on an
		// eviction, on ristretto's own policy goroutine. It is also the
		// right count: KeysEvicted counts every Del (each invalidation) as
		// an eviction too, and OnEvict fires only for records dropped for
		// room (or an expired TTL, a Clear: neither is used here).
		OnEvict: func(*ristretto.Item[*entry]) { c.stats.Evictions.Add(1) },
		Metrics: cfg.ristrettoMetrics,
	})
	if err != nil {
		return nil, err
	}
	c.rc = rc
	return c, nil
}

// Close stops the cache's background work.
func (c *Cache) Close() {
	if c.rc != nil {
		c.rc.Close()
	}
}

// Stats returns the live counters.
func (c *Cache) Stats() *Stats { return &c.stats }

// Get returns the contact's record as fresh as cons asks. The record is
// shared: the caller must not modify it.
func (c *Cache) Get(ctx context.Context, key consent.Key, cons consent.Consistency) (*consent.Record, error) {
	switch cons.Mode {
	case consent.FullyConsistent:
		return c.read(ctx, key)
	case consent.AtLeastAsFresh:
		if !c.covers(key, cons.Token) {
			return c.read(ctx, key)
		}
	}
	return c.cached(ctx, key)
}

func (c *Cache) cached(ctx context.Context, key consent.Key) (*consent.Record, error) {
	if c.rc == nil || !c.fresh(key.Partition(c.parts)) {
		return c.read(ctx, key)
	}
	s := stripe(key)
	gen, epoch := c.gens[s].Load(), c.epoch.Load()
	if e := c.lookup(key, gen, epoch); e != nil {
		c.stats.Hits.Add(1)
		return &e.rec, nil
	}
	c.stats.Misses.Add(1)
	// The flight is keyed by generation too: a caller that arrives after an
	// invalidation never joins a read that began before it.
	v, err, shared := c.flights.Do(flightKey(key, gen, epoch), func() (any, error) {
		if e := c.lookup(key, gen, epoch); e != nil {
			return e, nil
		}
		rec, err := c.backend.Get(ctx, key)
		if err != nil {
			return nil, err
		}
		if c.afterRead != nil {
			c.afterRead(key)
		}
		e := &entry{key: key, gen: gen, epoch: epoch, rec: rec}
		if c.gens[s].Load() == gen && c.epoch.Load() == epoch {
			c.rc.Set(key.Uint64(), e, cost(&rec))
		} else {
			c.stats.RejectedFills.Add(1)
		}
		return e, nil
	})
	if err != nil {
		// The flight read on its leader's context. If that one ended and
		// ours has not, the error is not ours: read for ourselves.
		if shared && ctx.Err() == nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
			return c.read(ctx, key)
		}
		return nil, err
	}
	return &v.(*entry).rec, nil
}

// GetMany is Get for many keys at once, as fresh as cons asks: out[i] is
// keys[i]'s record (shared, like Get's). The keys that must be read from the
// backend are read in one GetMany call. Misses do not join single flights: an
// audience pass reads each contact once, and a duplicate read is harmless.
func (c *Cache) GetMany(ctx context.Context, keys []consent.Key, cons consent.Consistency, out []*consent.Record) error {
	if len(out) != len(keys) {
		return errors.New("cache: GetMany needs as many outputs as keys")
	}
	var miss []int // indexes into keys still to read
	type snap struct{ gen, epoch uint64 }
	var snaps []snap
	for i, key := range keys {
		out[i] = nil
		use := c.rc != nil && cons.Mode != consent.FullyConsistent &&
			(cons.Mode != consent.AtLeastAsFresh || c.covers(key, cons.Token)) &&
			c.fresh(key.Partition(c.parts))
		if !use {
			miss = append(miss, i)
			snaps = append(snaps, snap{})
			continue
		}
		gen, epoch := c.gens[stripe(key)].Load(), c.epoch.Load()
		if e := c.lookup(key, gen, epoch); e != nil {
			c.stats.Hits.Add(1)
			out[i] = &e.rec
			continue
		}
		c.stats.Misses.Add(1)
		miss = append(miss, i)
		snaps = append(snaps, snap{gen, epoch + 1}) // +1: zero means "do not fill"
	}
	if len(miss) == 0 {
		return nil
	}
	mkeys := make([]consent.Key, len(miss))
	for j, i := range miss {
		mkeys[j] = keys[i]
	}
	recs := make([]consent.Record, len(miss))
	if err := c.backend.GetMany(ctx, mkeys, recs); err != nil {
		return err
	}
	for j, i := range miss {
		key, sn := keys[i], snaps[j]
		if sn.epoch == 0 {
			out[i] = &recs[j]
			continue
		}
		if c.afterRead != nil {
			c.afterRead(key)
		}
		// One allocation per entry, not one array for the batch: ristretto
		// holds entries one by one, and a shared array would outlive them all.
		e := &entry{key: key, gen: sn.gen, epoch: sn.epoch - 1, rec: recs[j]}
		out[i] = &e.rec
		// The same check as a single fill: a write invalidated since the
		// snapshot means this read may be older than it.
		if c.gens[stripe(key)].Load() == e.gen && c.epoch.Load() == e.epoch {
			c.rc.Set(key.Uint64(), e, cost(&e.rec))
		} else {
			c.stats.RejectedFills.Add(1)
		}
	}
	return nil
}

func (c *Cache) lookup(key consent.Key, gen, epoch uint64) *entry {
	e, ok := c.rc.Get(key.Uint64())
	if !ok || e.key != key || e.gen != gen || e.epoch != epoch {
		return nil
	}
	return e
}

func (c *Cache) read(ctx context.Context, key consent.Key) (*consent.Record, error) {
	rec, err := c.backend.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	return &rec, nil
}

// Invalidate drops the contact's cached record and notes that the write
// with token tok has been seen. Call it for every applied write.
func (c *Cache) Invalidate(key consent.Key, tok consent.ConsistencyToken) {
	c.Drop(key)
	if int(tok.Partition) < len(c.applied) {
		maxUint64(&c.applied[tok.Partition], tok.Seq)
	}
}

// Drop removes the contact's cached record without claiming anything about
// the order of writes: for a process's own writes to a shared store, whose
// feed will report them (and the writes before them) later.
func (c *Cache) Drop(key consent.Key) {
	c.gens[stripe(key)].Add(1)
	if c.rc != nil {
		c.rc.Del(key.Uint64())
	}
}

// Fence records that every write in partition p up to seq, and every one
// acknowledged before at, has been invalidated. With a lease, a partition's
// cached records are used only until lease after its latest fence.
func (c *Cache) Fence(p uint32, seq uint64, at time.Time) {
	if int(p) >= len(c.fences) {
		return
	}
	maxInt64(&c.fences[p], int64(at.Sub(c.base)))
	maxUint64(&c.applied[p], seq)
}

// Lost says partition p's feed has failed: until the next fence, nothing
// cached for p is used and no token of p counts as seen. A Redis that
// restarts or fails over closes the feed's connection, so this runs before
// any write to the new Redis can return a token.
func (c *Cache) Lost(p uint32) {
	if int(p) >= len(c.fences) {
		return
	}
	c.fences[p].Store(math.MinInt64)
	c.applied[p].Store(0)
}

func maxInt64(a *atomic.Int64, v int64) {
	for cur := a.Load(); v > cur && !a.CompareAndSwap(cur, v); cur = a.Load() {
	}
}

func maxUint64(a *atomic.Uint64, v uint64) {
	for cur := a.Load(); v > cur && !a.CompareAndSwap(cur, v); cur = a.Load() {
	}
}

// FenceAge returns how old partition p's fence is, the staleness bound the
// cache runs with there (the feed's lag, for metrics); ok is false when the
// partition has no fence (never fenced, or its feed failed since).
func (c *Cache) FenceAge(p uint32) (age time.Duration, ok bool) {
	if int(p) >= len(c.fences) {
		return 0, false
	}
	f := c.fences[p].Load()
	if f == math.MinInt64 {
		return 0, false
	}
	return c.now().Sub(c.base) - time.Duration(f), true
}

func (c *Cache) fresh(p uint32) bool {
	if c.lease <= 0 {
		return true
	}
	f := c.fences[p].Load()
	return f != math.MinInt64 && int64(c.now().Sub(c.base))-f <= int64(c.lease)
}

// Flush makes every cached record unusable at once (ristretto's Clear is not
// safe under concurrent use). Use it when writes may have been missed.
func (c *Cache) Flush() {
	// Sequences may restart after what made us flush (Redis lost its data),
	// so no token counts as seen until the feed reports it again.
	for i := range c.applied {
		c.applied[i].Store(0)
	}
	c.epoch.Add(1)
	c.stats.Flushes.Add(1)
}

// covers reports whether every write up to tok has been invalidated here, for
// key: a token of another partition says nothing about key's records.
func (c *Cache) covers(key consent.Key, tok consent.ConsistencyToken) bool {
	return tok.Partition == key.Partition(c.parts) && c.applied[tok.Partition].Load() >= tok.Seq
}

// stripe uses other key bytes than the ristretto hash, so a hot stripe and
// a hot ristretto shard are unrelated.
func stripe(k consent.Key) uint32 { return uint32(binary.BigEndian.Uint16(k[12:14])) % stripes }

func flightKey(k consent.Key, gen, epoch uint64) string {
	b := make([]byte, 0, len(k)+16)
	b = append(b, k[:]...)
	b = binary.BigEndian.AppendUint64(b, gen)
	b = binary.BigEndian.AppendUint64(b, epoch)
	return string(b)
}

// cost estimates the memory an entry holds.
func cost(r *consent.Record) int64 {
	n := int64(unsafe.Sizeof(entry{}))
	for name, p := range r.Purposes {
		n += int64(len(name)) + 64
		if g := p.Grant; g != nil {
			n += int64(unsafe.Sizeof(*g) + uintptr(len(g.ThirdParty)+len(g.EvidenceRef)+len(g.NoticeVersion)+len(g.Actor)))
		}
	}
	// Up to consent.MaxLinks of them: a linked record can hold more than
	// its purposes.
	return n + int64(len(r.Links))*int64(unsafe.Sizeof(consent.Link{}))
}
