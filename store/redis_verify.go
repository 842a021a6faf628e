package store

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"

	consent "github.com/consentd/consentd"
	"github.com/consentd/consentd/chain"
)

// VerifyHistory walks every partition's chain, checks every record against
// its history, and checks that every event the change stream still names
// is present or accounted for by an erasure (which also catches newest
// events deleted together with the head set back). It reads while writes
// go on: each partition's head is read first, and what is written after it
// is left for the next run; only an erasure during the walk can show as a
// break (an event missing), so run it again before acting on one.
func (s *Redis) VerifyHistory(ctx context.Context) ([]consent.PartitionHistory, error) {
	contacts, err := s.scanContacts(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]consent.PartitionHistory, s.cfg.Partitions)
	for p := range s.cfg.Partitions {
		if out[p], err = s.verifyPartition(ctx, p, contacts[p]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// stored says which of a contact's keys exist.
type stored struct{ record, history bool }

// scanContacts finds every contact key with a record or a history, by
// partition, on every master.
func (s *Redis) scanContacts(ctx context.Context) ([]map[consent.Key]stored, error) {
	out := make([]map[consent.Key]stored, s.cfg.Partitions)
	for i := range out {
		out[i] = map[consent.Key]stored{}
	}
	var mu sync.Mutex
	scan := func(ctx context.Context, c *redis.Client) error {
		iter := c.Scan(ctx, 0, "{*}:[rh]:*", 1000).Iterator()
		for iter.Next(ctx) {
			p, kind, key, ok := s.parseContactKey(iter.Val())
			if !ok {
				continue
			}
			mu.Lock()
			st := out[p][key]
			if kind == 'r' {
				st.record = true
			} else {
				st.history = true
			}
			out[p][key] = st
			mu.Unlock()
		}
		return iter.Err()
	}
	var err error
	switch c := s.rdb.(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, scan)
	case *redis.Client:
		err = scan(ctx, c)
	default:
		err = errors.New("store: redis: cannot scan with this client")
	}
	if err != nil {
		return nil, redisErr(err)
	}
	return out, nil
}

// parseContactKey parses "{p}:r:<key>" and "{p}:h:<key>"; a key that only
// looks like one (the pattern also matches request ids) is not.
func (s *Redis) parseContactKey(k string) (uint32, byte, consent.Key, bool) {
	var key consent.Key
	end := strings.IndexByte(k, '}')
	if !strings.HasPrefix(k, "{") || end < 0 || len(k) != end+4+len(key) {
		return 0, 0, key, false
	}
	p, err := strconv.ParseUint(k[1:end], 10, 32)
	kind := k[end+2]
	if err != nil || uint32(p) >= s.cfg.Partitions || k[end+1] != ':' || k[end+3] != ':' || (kind != 'r' && kind != 'h') {
		return 0, 0, key, false
	}
	copy(key[:], k[end+4:])
	if key.Partition(s.cfg.Partitions) != uint32(p) {
		return 0, 0, key, false
	}
	return uint32(p), kind, key, true
}

// verifyBatch is how many contacts one pipeline reads.
const verifyBatch = 256

func (s *Redis) verifyPartition(ctx context.Context, p uint32, contacts map[consent.Key]stored) (consent.PartitionHistory, error) {
	rep := consent.PartitionHistory{Partition: p}
	w := s.cfg.Chain.Walk(p)
	var (
		head   *redis.SliceCmd
		stream *redis.XMessageSliceCmd
	)
	_, err := s.rdb.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		head = pipe.MGet(ctx, seqKey(p), headKey(p))
		stream = pipe.XRange(ctx, feedKey(p), "-", "+")
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return rep, redisErr(err)
	}
	if v, ok := head.Val()[0].(string); ok {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			w.Problem(0, "the partition's sequence counter is corrupt")
		}
		rep.HeadSeq = n
	}
	if v, ok := head.Val()[1].(string); ok {
		copy(rep.HeadLink[:], v)
	}

	keys := make([]consent.Key, 0, len(contacts))
	for k := range contacts {
		keys = append(keys, k)
	}
	for len(keys) > 0 {
		batch := keys[:min(verifyBatch, len(keys))]
		keys = keys[len(batch):]
		recs := make([]*redis.StringCmd, len(batch))
		hists := make([]*redis.StringSliceCmd, len(batch))
		// One transaction: a write's script changes record and history
		// together, so a batch never sees one without the other.
		_, err := s.rdb.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
			for i, k := range batch {
				recs[i] = pipe.Get(ctx, recordKey(p, k))
				hists[i] = pipe.LRange(ctx, historyKey(p, k), 0, -1)
			}
			return nil
		})
		if err != nil && !errors.Is(err, redis.Nil) {
			return rep, redisErr(err)
		}
		for i, k := range batch {
			if err := s.verifyContact(w, p, rep.HeadSeq, k, recs[i], hists[i]); err != nil {
				return rep, err
			}
			rep.Contacts++
		}
	}
	for _, m := range stream.Val() {
		seq, ok := streamSeq(m.ID)
		switch {
		case !ok:
			w.Problem(0, "the change stream has a malformed entry")
		case seq > rep.HeadSeq:
			w.Problem(rep.HeadSeq+1, "the change stream names event "+strconv.FormatUint(seq, 10)+", beyond the partition head: events were removed and the head set back")
		case !w.Has(seq):
			w.Problem(seq, "the change stream names this event, but it is neither present nor removed by an erasure")
		}
	}
	finish(&rep, w)
	return rep, nil
}

func (s *Redis) verifyContact(w *chain.Walk, p uint32, headSeq uint64, key consent.Key, recCmd *redis.StringCmd, histCmd *redis.StringSliceCmd) error {
	var rec *consent.Record
	v, err := recCmd.Bytes()
	switch {
	case err == nil:
		r, seq, err := decodeStoredRecord(p, v)
		if err != nil {
			w.Problem(seq, "a contact's record is corrupt")
			return nil
		}
		rec = &r
	case !errors.Is(err, redis.Nil):
		return redisErr(err)
	}
	items, err := histCmd.Result()
	if err != nil {
		return redisErr(err)
	}
	history := make([]storedEvent, 0, len(items))
	for _, item := range items {
		seq, entry, err := splitSeq([]byte(item))
		if err != nil {
			w.Problem(0, "a history entry has no sequence number")
			continue
		}
		history = append(history, storedEvent{seq: seq, entry: entry})
	}
	checkContact(w, headSeq, key, rec, history)
	return nil
}
