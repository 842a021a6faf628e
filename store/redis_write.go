package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/consentd/consentd/consent"
	"github.com/consentd/consentd/internal/chain"
)

// writeScript applies one partition's share of a batch atomically: it
// checks that the partition's marker holds this store's id and that nothing
// the writer read has changed, then adds the change-feed entries, moves the
// head, appends the histories and writes the records and request ids.
// lua/write.lua says why at each step, and lists its keys, arguments and
// replies; commit builds them.
var writeScript = newScript("write.lua")

// Apply folds w into the contact's record with consent.Apply and writes the
// result atomically, retrying when another sidecar wrote the contact or
// its partition in between. A request id seen before returns the first
// token, after the same replication wait as a first write.
func (s *Redis) Apply(ctx context.Context, w consent.Write) (consent.ConsistencyToken, error) {
	toks, errs, err := s.ApplyBatch(ctx, []consent.Write{w})
	if err != nil {
		return consent.ConsistencyToken{}, err
	}
	return toks[0], errs[0]
}

// ApplyBatch applies writes in order, each with its own outcome (a refused
// write changes nothing and the others go on), with one read and one script
// per partition they touch: what a bulk load needs, where three round trips
// per write would be the whole cost. err is for a partition's share as a
// whole: the shares of partitions before it may have been applied, and a
// retry of the batch with the same request ids applies each write once.
func (s *Redis) ApplyBatch(ctx context.Context, ws []consent.Write) (toks []consent.ConsistencyToken, errs []error, err error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	if err := s.lostErr(); err != nil {
		return nil, nil, err
	}
	claims, err := s.claimAll(ctx, ws) // redis_claim.go
	if err != nil {
		return nil, nil, err
	}
	toks, errs = make([]consent.ConsistencyToken, len(ws)), make([]error, len(ws))
	var (
		order  []uint32
		shares = map[uint32][]int{}
	)
	for i := range ws {
		p := ws[i].Key.Partition(s.cfg.Partitions)
		if shares[p] == nil {
			order = append(order, p)
		}
		shares[p] = append(shares[p], i)
	}
	for _, p := range order {
		if err := s.applyShare(ctx, p, ws, shares[p], claims, toks, errs); err != nil {
			return nil, nil, err
		}
	}
	s.unbindAll(ctx, ws, errs, claims)
	return toks, errs, nil
}

var errConflict = errors.New("store: redis: written concurrently")

// applyShare applies the writes ws[idx...] of partition p, retrying while
// other sidecars write the partition in between.
func (s *Redis) applyShare(ctx context.Context, p uint32, ws []consent.Write, idx []int, claims map[[32]byte]bound, toks []consent.ConsistencyToken, errs []error) error {
	share := make([]consent.Write, len(idx))
	for j, i := range idx {
		share[j] = ws[i]
	}
	if err := s.lostErr(); err != nil {
		return err
	}
	select {
	case s.writing[p] <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	var (
		pl  *batchPlan
		err error
	)
	for attempt := 0; attempt < 64; attempt++ {
		// Taken before the read, so no higher than the head read unless the
		// partition went back: a floor raised meanwhile (by CheckIdentity
		// reading another sidecar's write) is no loss.
		floor := s.seen[p].Load()
		if pl, err = s.plan(ctx, p, share, claims); err != nil {
			break
		}
		// A head below the floor is a store rolled back (same id, older
		// data): refused before the script runs, without waiting for
		// CheckIdentity to see it.
		if pl.head < floor {
			err = s.fail(s.wentBack(ctx, p, floor, pl.head))
			break
		}
		if err = s.commit(ctx, p, pl); !errors.Is(err, errConflict) {
			break
		}
	}
	<-s.writing[p]
	if errors.Is(err, errConflict) {
		return fmt.Errorf("%w: too many concurrent writes to one partition", consent.ErrUnavailable)
	}
	if err != nil {
		return err
	}
	for j, i := range idx {
		toks[i], errs[i] = pl.toks[j], pl.errs[j]
		// Also on a replay: the first attempt may have failed after it was
		// applied, before this sidecar dropped its cached copy.
		if errs[i] == nil {
			s.onChange(ws[i].Key, toks[i])
		}
	}
	return nil
}

// wentBack says why partition p's head is below its floor: a wipe or
// another store (the marker says so), or a rollback.
func (s *Redis) wentBack(ctx context.Context, p uint32, floor, head uint64) error {
	where := s.nodeName(ctx, markerKey(p))
	id, err := s.rdb.HGet(ctx, markerKey(p), "id").Result()
	switch {
	case errors.Is(err, redis.Nil):
		return lostf("partition %d's marker %s is missing on %s; write refused, nothing written", p, markerKey(p), where)
	case err == nil && id != s.markerID(p):
		return lostf("partition %d's marker %s holds another store's id on %s; write refused, nothing written", p, markerKey(p), where)
	}
	return lostf("partition %d's sequence %s went back from %d to %d on %s; write refused, nothing written", p, seqKey(p), floor, head, where)
}

// prefetched is what plan read of a partition in one round trip.
type prefetched struct {
	p        uint32
	records  map[consent.Key]*redis.StringCmd
	requests map[string]*redis.StringCmd
	lists    map[consent.Key]*redis.StringSliceCmd // histories
	claims   map[[32]byte]bound                    // claimAll's
}

func (f *prefetched) record(key consent.Key) (consent.Record, uint64, error) {
	v, err := f.records[key].Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		return consent.Record{}, 0, nil
	case err != nil:
		return consent.Record{}, 0, redisErr(err)
	}
	return decodeStoredRecord(f.p, v)
}

func (f *prefetched) replay(w *consent.Write) (consent.ConsistencyToken, bool, error) {
	v, err := f.requests[requestKey(f.p, w.Key, w.RequestName())].Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		return consent.ConsistencyToken{}, false, nil
	case err != nil:
		return consent.ConsistencyToken{}, false, redisErr(err)
	}
	tok, err := replayed(f.p, v, w.Fingerprint)
	return tok, true, err
}

func (f *prefetched) history(key consent.Key) ([]storedEvent, error) {
	items, err := f.lists[key].Result()
	if err != nil {
		// Never erase what could not be read: its events would go without
		// tombstones.
		return nil, redisErr(err)
	}
	var out []storedEvent
	for _, item := range items {
		// An item without a sequence number cannot be accounted for:
		// erase it anyway, and verification reports the gap.
		if n, entry, err := splitSeq([]byte(item)); err == nil {
			out = append(out, storedEvent{seq: n, entry: entry})
		}
	}
	return out, nil
}

// plan reads, in one round trip to the partition's slot, the head, every
// record, every request id and the history of each contact an erasure will
// remove, and plans the writes on it.
func (s *Redis) plan(ctx context.Context, p uint32, ws []consent.Write, claims map[[32]byte]bound) (*batchPlan, error) {
	f := &prefetched{p: p, records: map[consent.Key]*redis.StringCmd{}, requests: map[string]*redis.StringCmd{},
		lists: map[consent.Key]*redis.StringSliceCmd{}, claims: claims}
	var head *redis.SliceCmd
	_, err := s.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		head = pipe.MGet(ctx, seqKey(p), headKey(p))
		for i := range ws {
			w := &ws[i]
			if f.records[w.Key] == nil {
				f.records[w.Key] = pipe.Get(ctx, recordKey(p, w.Key))
			}
			if id := w.RequestName(); id != "" {
				if rk := requestKey(p, w.Key, id); f.requests[rk] == nil {
					f.requests[rk] = pipe.Get(ctx, rk)
				}
			}
			if w.Event.Kind == consent.EventErase && f.lists[w.Key] == nil {
				f.lists[w.Key] = pipe.LRange(ctx, historyKey(p, w.Key), 0, -1)
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, redisErr(err)
	}
	var (
		seq  uint64
		link chain.Link
	)
	if v, ok := head.Val()[0].(string); ok {
		if seq, err = strconv.ParseUint(v, 10, 64); err != nil {
			return nil, errCorrupt
		}
	}
	if v, ok := head.Val()[1].(string); ok {
		copy(link[:], v)
	}
	return planBatch(s.cfg.Chain, p, seq, link, ws, f)
}

// commit runs the plan's script; errConflict means something it read has
// changed.
func (s *Redis) commit(ctx context.Context, p uint32, pl *batchPlan) error {
	if len(pl.ops) == 0 && len(pl.requests) == 0 {
		return nil // every write refused: nothing to do
	}
	keys := []string{seqKey(p), headKey(p), feedKey(p), markerKey(p)}
	args := []any{s.markerID(p), pl.head, pl.link[:], s.cfg.FeedMaxLen, s.cfg.RequestTTL.Milliseconds(), len(pl.contacts), len(pl.ops), len(pl.requests),
		pl.head + uint64(len(pl.ops))}
	for _, pc := range pl.contacts {
		keys = append(keys, recordKey(p, pc.key), historyKey(p, pc.key))
		var value []byte
		if pc.changed {
			rec := pc.rec
			rec.Token = consent.ConsistencyToken{}
			value = EncodeRecord(append(strconv.AppendUint(nil, pc.rec.Token.Seq, 10), ':'), &rec)
		}
		var prefix []byte // no record
		if pc.readSeq != 0 {
			prefix = append(strconv.AppendUint(nil, pc.readSeq, 10), ':')
		}
		args = append(args, prefix, value, pc.key[:])
	}
	for n, o := range pl.ops {
		seq := pl.head + uint64(n) + 1
		erase := "0"
		if o.erase {
			erase = "1"
		}
		id := strconv.AppendUint(nil, seq, 10)
		item := append(append(id[:len(id):len(id)], ':'), o.entry...)
		args = append(args, o.contact, append(id, "-0"...), item, erase)
	}
	for _, r := range pl.requests {
		keys = append(keys, requestKey(p, pl.contacts[r.contact].key, r.id))
		var value []byte // a replay: refresh
		if !r.replay {
			value = append(r.fp[:len(r.fp):len(r.fp)], strconv.FormatUint(r.tok.Seq, 10)...)
		}
		args = append(args, value)
	}
	_, err := s.replicated(ctx, seqKey(p), func(c redis.Cmdable) (consent.ConsistencyToken, error) {
		res, err := writeScript.Run(ctx, c.(redis.Scripter), keys, args...).Slice()
		if err != nil {
			return consent.ConsistencyToken{}, err
		}
		switch res[0] {
		case "ok":
			return consent.ConsistencyToken{}, nil
		case "conflict":
			return consent.ConsistencyToken{}, errConflict
		case "lost":
			what := "is missing"
			if res[1] == "other" {
				what = "holds another store's id"
			}
			return consent.ConsistencyToken{}, s.fail(lostf("partition %d's marker %s %s on %s; write refused, nothing written", p, markerKey(p), what, s.nodeName(ctx, markerKey(p))))
		}
		return consent.ConsistencyToken{}, fmt.Errorf("store: redis: write refused: %v", res)
	})
	if err == nil {
		// Acknowledged (WAIT confirmed it, when asked for): the floor.
		s.raise(p, pl.head+uint64(len(pl.ops)))
	}
	return err
}
