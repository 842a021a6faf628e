package store

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/consentd/consentd/consent"
)

// Invalidator is what a Feed keeps fresh: the cache.
type Invalidator interface {
	// Invalidate drops the contact's record: the write tok changed it.
	Invalidate(key consent.Key, tok consent.ConsistencyToken)
	// Flush drops everything: writes may have been missed.
	Flush()
	// Fence says every write in partition p up to seq, and every one
	// acknowledged before at, has been passed to Invalidate.
	Fence(p uint32, seq uint64, at time.Time)
	// Lost says partition p's feed failed: trust nothing of p until the
	// next Fence.
	Lost(p uint32)
}

// FeedConfig tunes a Feed.
type FeedConfig struct {
	// Block is how long one XREAD waits for news. It bounds how stale the
	// fence can be on an idle partition, so keep it well under the lease.
	Block time.Duration
	// Count is the most entries one read takes.
	Count int64
	// Backoff is the pause after a failed read.
	Backoff time.Duration
	Logger  *slog.Logger
	Now     func() time.Time
}

// FeedStats are counters for metrics.
type FeedStats struct {
	Entries, Gaps, Resets, Errors atomic.Uint64
}

// Feed follows every partition's change stream and turns it into cache
// invalidations. Each partition is read with XREAD BLOCK from the last id
// seen; sequence numbers must be contiguous. A gap (the stream was trimmed
// past us), a regression, a partition marker changed (another store) or a
// new replication id (a failover, possibly to a replica that missed writes)
// flushes the cache and restarts from the stream's tail. A partition marker
// gone (Redis lost its data) flushes the cache and keeps the partition Lost,
// never resyncing, while it stays gone. After each successful read the
// partition's fence moves to the time the read started.
type Feed struct {
	rdb   redis.UniversalClient
	parts uint32
	inv   Invalidator
	cfg   FeedConfig
	stats FeedStats
}

// NewFeed returns a feed over rdb, which should be a client of its own: it
// keeps one connection per partition blocked in XREAD.
func NewFeed(rdb redis.UniversalClient, partitions uint32, inv Invalidator, cfg FeedConfig) *Feed {
	if cfg.Block <= 0 {
		cfg.Block = 250 * time.Millisecond
	}
	if cfg.Count <= 0 {
		cfg.Count = 1000
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = 100 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Feed{rdb: rdb, parts: partitions, inv: inv, cfg: cfg}
}

// Stats returns the live counters.
func (f *Feed) Stats() *FeedStats { return &f.stats }

// Run follows every partition until ctx is done.
func (f *Feed) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for p := range f.parts {
		wg.Go(func() { f.follow(ctx, p) })
	}
	wg.Wait()
}

// position is where one partition's reader stands.
type position struct {
	id       string // last stream id applied
	seq      uint64
	identity string // store id + replication id; "" until synced
}

func (f *Feed) follow(ctx context.Context, p uint32) {
	var pos position
	failing := false
	for ctx.Err() == nil {
		if pos.identity == "" {
			if err := f.sync(ctx, p, &pos); err != nil {
				failing = f.failed(ctx, p, failing, err)
				continue
			}
		}
		start := f.cfg.Now()
		streams, err := f.rdb.XRead(ctx, &redis.XReadArgs{
			Streams: []string{feedKey(p), pos.id}, Count: f.cfg.Count, Block: f.cfg.Block,
		}).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			failing = f.failed(ctx, p, failing, err)
			continue
		}
		full := false
		for _, s := range streams {
			for _, m := range s.Messages {
				f.apply(p, &pos, m)
			}
			full = int64(len(s.Messages)) >= f.cfg.Count
		}
		// Checked after the read: if Redis lost its data or failed over
		// meanwhile, the read may have come back empty with nothing wrong.
		id, head, err := f.identity(ctx, p)
		if errors.Is(err, errNoMarker) {
			f.reset(p, &pos, "partition marker missing: redis lost its data")
		}
		if err != nil {
			failing = f.failed(ctx, p, failing, err)
			continue
		}
		if id != pos.identity {
			f.reset(p, &pos, "redis lost data or failed over")
			continue
		}
		if failing {
			f.cfg.Logger.Info("change feed recovered", "partition", p)
			failing = false
		}
		if full {
			continue
		}
		if head > pos.seq {
			// Writes we have not read: either just made, or trimmed away
			// before we read them (and then no later entry may ever come to
			// show the gap).
			next, err := f.rdb.XRangeN(ctx, feedKey(p), "("+pos.id, "+", 1).Result()
			if err != nil {
				failing = f.failed(ctx, p, failing, err)
				continue
			}
			if seq, ok := streamSeq(firstID(next)); !ok || seq != pos.seq+1 {
				f.stats.Gaps.Add(1)
				f.reset(p, &pos, "change stream trimmed past this sidecar")
				continue
			}
			// Just written after our read: nothing is missing, and the
			// next read takes it.
		}
		f.inv.Fence(p, pos.seq, start)
	}
}

// reset flushes the cache and makes the next round start from the tail.
func (f *Feed) reset(p uint32, pos *position, why string) {
	f.cfg.Logger.Warn("change feed reset; cache flushed", "partition", p, "why", why)
	f.stats.Resets.Add(1)
	f.inv.Flush()
	pos.identity = ""
}

func firstID(ms []redis.XMessage) string {
	if len(ms) == 0 {
		return ""
	}
	return ms[0].ID
}

// failed logs the first of a run of errors and pauses before the next try.
func (f *Feed) failed(ctx context.Context, p uint32, failing bool, err error) bool {
	if ctx.Err() != nil {
		return failing
	}
	f.stats.Errors.Add(1)
	f.inv.Lost(p)
	if !failing {
		f.cfg.Logger.Warn("change feed read failed; cached records expire with the lease", "partition", p, "error", err)
	}
	t := time.NewTimer(f.cfg.Backoff)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
	return true
}

// sync starts reading after the partition's newest write: whatever came
// before is either already reflected in the cache or was flushed.
func (f *Feed) sync(ctx context.Context, p uint32, pos *position) error {
	id, head, err := f.identity(ctx, p)
	if err != nil {
		return err
	}
	pos.id, pos.seq, pos.identity = "0-0", head, id
	if head > 0 {
		pos.id = strconv.FormatUint(head, 10) + "-0"
	}
	// A record cached before head was read may predate a write at or
	// before head, which this reader will never see: drop them all.
	f.inv.Flush()
	return nil
}

func (f *Feed) apply(p uint32, pos *position, m redis.XMessage) {
	seq, ok := streamSeq(m.ID)
	k, _ := m.Values["k"].(string)
	if !ok || len(k) != len(consent.Key{}) {
		f.cfg.Logger.Error("change feed entry malformed; cache flushed", "partition", p, "id", m.ID)
		f.inv.Flush()
		pos.id = m.ID
		return
	}
	if seq != pos.seq+1 {
		f.stats.Gaps.Add(1)
		f.cfg.Logger.Warn("change feed gap; cache flushed", "partition", p, "after", pos.seq, "got", seq)
		f.inv.Flush()
	}
	var key consent.Key
	copy(key[:], k)
	f.inv.Invalidate(key, consent.ConsistencyToken{Partition: p, Seq: seq})
	f.stats.Entries.Add(1)
	pos.id, pos.seq = m.ID, seq
}

// identity names the data a partition's stream belongs to (the store id in
// its marker, which only initialisation writes, and the replication id of
// the node serving it), and returns the partition's newest sequence.
//
// A partition without its marker has no identity: errNoMarker, so the
// partition stays Lost and no fence moves on a store that was wiped (or
// replaced by one never initialised) until an operator restores it.
func (f *Feed) identity(ctx context.Context, p uint32) (string, uint64, error) {
	pipe := f.rdb.Pipeline()
	gen := pipe.HGet(ctx, markerKey(p), "id")
	head := pipe.Get(ctx, seqKey(p))
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return "", 0, err
	}
	if errors.Is(gen.Err(), redis.Nil) {
		return "", 0, errNoMarker
	}
	n, err := head.Uint64()
	if err != nil && !errors.Is(err, redis.Nil) {
		return "", 0, err
	}
	node, err := nodeFor(ctx, f.rdb, markerKey(p))
	if err != nil {
		return "", 0, err
	}
	// Where INFO is denied (RedisConfig.OperatorChecksSettings), a failover
	// goes unseen here; a replica that missed writes shows as a sequence
	// gone back in Redis.CheckIdentity.
	info, err := node.Info(ctx, "replication").Result()
	if err != nil && !denied(err) {
		return "", 0, err
	}
	replid := ""
	for _, line := range strings.Split(info, "\n") {
		if id, ok := strings.CutPrefix(strings.TrimSpace(line), "master_replid:"); ok {
			replid = id
		}
	}
	return gen.Val() + "/" + replid, n, nil
}

var errNoMarker = errors.New("store: redis: partition marker missing: the store was wiped or replaced")

// streamSeq reads the sequence from a stream id "<seq>-0".
func streamSeq(id string) (uint64, bool) {
	ms, _, ok := strings.Cut(id, "-")
	if !ok {
		return 0, false
	}
	seq, err := strconv.ParseUint(ms, 10, 64)
	return seq, err == nil && seq > 0
}
