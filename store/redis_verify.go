package store

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/consentd/consentd/consent"
	"github.com/consentd/consentd/internal/chain"
)

// VerifyHistory walks every partition's chain, checks every record against
// its history, and checks that every event the change stream still names
// is present or accounted for by an erasure (which also catches newest
// events deleted together with the head set back). A key that cannot be
// read as what its name says (replaced by one of another type) is a break
// like any other, and the walk goes on past it. It reads while writes
// go on: every partition's head is read first, and what is written after it
// is left for the next run; only an erasure during the walk can show as a
// break (an event missing), so run it again before acting on one.
func (s *Redis) VerifyHistory(ctx context.Context) ([]consent.PartitionHistory, error) {
	heads := make([]partitionHead, s.cfg.Partitions)
	for p := range s.cfg.Partitions {
		var err error
		if heads[p], err = s.readHead(ctx, p); err != nil {
			return nil, err
		}
	}
	contacts, err := s.scanContacts(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]consent.PartitionHistory, s.cfg.Partitions)
	for p := range s.cfg.Partitions {
		if out[p], err = s.verifyPartition(ctx, p, heads[p], contacts[p]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// partitionHead is a partition's head as read before the walk, with the
// newest event its change stream named then.
type partitionHead struct {
	seq, streamLast uint64
	link            chain.Link
	corrupt         bool
	// problems are the partition's keys that could not be read as what
	// their names say; noFeed is set when the change stream is one of them.
	problems []string
	noFeed   bool
}

// wrongType reports whether err is Redis refusing a command for the type
// of the key it names: a key replaced by one of another type, which verify
// reports as tampering instead of giving up on.
func wrongType(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "WRONGTYPE")
}

// replaced is the reason given for a key of the wrong type.
func replaced(what, want string) string {
	return what + " is not a " + want + ": the key was replaced by one of another type"
}

func (s *Redis) readHead(ctx context.Context, p uint32) (partitionHead, error) {
	var (
		h         partitionHead
		seq, link *redis.StringCmd
		newest    *redis.XMessageSliceCmd
	)
	// One transaction: the stream and the head move together. GET, not
	// MGET, so a counter or head of another type shows as one.
	_, err := s.rdb.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		seq = pipe.Get(ctx, seqKey(p))
		link = pipe.Get(ctx, headKey(p))
		newest = pipe.XRevRangeN(ctx, feedKey(p), "+", "-", 1)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) && !wrongType(err) {
		return h, redisErr(err)
	}
	for _, c := range []struct {
		cmd  *redis.StringCmd
		what string
		set  func(string)
	}{
		{seq, "the partition's sequence counter", func(v string) {
			n, err := strconv.ParseUint(v, 10, 64)
			h.seq, h.corrupt = n, err != nil
		}},
		{link, "the partition's chain head", func(v string) { copy(h.link[:], v) }},
	} {
		switch v, err := c.cmd.Result(); {
		case err == nil:
			c.set(v)
		case wrongType(err):
			h.problems = append(h.problems, replaced(c.what, "string"))
		case !errors.Is(err, redis.Nil):
			return h, redisErr(err)
		}
	}
	switch ms, err := newest.Result(); {
	case wrongType(err):
		h.problems = append(h.problems, replaced("the partition's change stream", "stream"))
		h.noFeed = true
	case err != nil:
		return h, redisErr(err)
	case len(ms) == 1:
		h.streamLast, _ = streamSeq(ms[0].ID)
	}
	return h, nil
}

// scanContacts finds every contact key with a record or a history, by
// partition, on every master.
func (s *Redis) scanContacts(ctx context.Context) ([]map[consent.Key]struct{}, error) {
	out := make([]map[consent.Key]struct{}, s.cfg.Partitions)
	for i := range out {
		out[i] = map[consent.Key]struct{}{}
	}
	var mu sync.Mutex
	scan := func(ctx context.Context, c *redis.Client) error {
		iter := c.Scan(ctx, 0, "{*}:[rh]:*", 1000).Iterator()
		for iter.Next(ctx) {
			p, key, ok := s.parseContactKey(iter.Val())
			if !ok {
				continue
			}
			mu.Lock()
			out[p][key] = struct{}{}
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
func (s *Redis) parseContactKey(k string) (uint32, consent.Key, bool) {
	var key consent.Key
	end := strings.IndexByte(k, '}')
	if !strings.HasPrefix(k, "{") || end < 0 || len(k) != end+4+len(key) {
		return 0, key, false
	}
	p, err := strconv.ParseUint(k[1:end], 10, 32)
	kind := k[end+2]
	if err != nil || uint32(p) >= s.cfg.Partitions || k[end+1] != ':' || k[end+3] != ':' || (kind != 'r' && kind != 'h') {
		return 0, key, false
	}
	copy(key[:], k[end+4:])
	if key.Partition(s.cfg.Partitions) != uint32(p) {
		return 0, key, false
	}
	return uint32(p), key, true
}

// verifyBatch is how many contacts one pipeline reads.
const verifyBatch = 256

func (s *Redis) verifyPartition(ctx context.Context, p uint32, head partitionHead, contacts map[consent.Key]struct{}) (consent.PartitionHistory, error) {
	rep := consent.PartitionHistory{Partition: p, HeadSeq: head.seq, HeadLink: head.link}
	w := s.cfg.Chain.Walk(p)
	if head.corrupt {
		w.Problem(0, "the partition's sequence counter is corrupt")
	}
	for _, reason := range head.problems {
		w.Problem(0, reason)
	}
	if head.streamLast > head.seq {
		w.Problem(head.seq+1, "the change stream names event "+strconv.FormatUint(head.streamLast, 10)+", beyond the partition head: events were removed and the head set back")
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
		if err != nil && !errors.Is(err, redis.Nil) && !wrongType(err) {
			return rep, redisErr(err)
		}
		for i, k := range batch {
			if err := s.verifyContact(w, p, rep.HeadSeq, k, recs[i], hists[i]); err != nil {
				return rep, err
			}
			rep.Contacts++
		}
	}
	if !head.noFeed {
		if err := s.checkStream(ctx, p, head.seq, w); err != nil {
			return rep, err
		}
	}
	if err := finish(ctx, &rep, w); err != nil {
		return rep, err
	}
	return rep, nil
}

// checkStream checks that every event up to headSeq the partition's change
// stream names is present or accounted for by an erasure, a page at a time.
func (s *Redis) checkStream(ctx context.Context, p uint32, headSeq uint64, w *chain.Walk) error {
	const page = 10000
	start := "-"
	for {
		ms, err := s.rdb.XRangeN(ctx, feedKey(p), start, "+", page).Result()
		if err != nil {
			return redisErr(err)
		}
		for _, m := range ms {
			seq, ok := streamSeq(m.ID)
			switch {
			case !ok:
				w.Problem(0, "the change stream has a malformed entry")
			case seq > headSeq: // written after the walk began
				return nil
			case !w.Has(seq):
				w.Problem(seq, "the change stream names this event, but it is neither present nor removed by an erasure")
			}
		}
		if len(ms) < page {
			return nil
		}
		start = "(" + ms[len(ms)-1].ID
	}
}

// verifyContact checks one contact's record and history. One that cannot
// be read (corrupt, or a key of another type) is a break; the other is
// still walked, but not compared with it.
func (s *Redis) verifyContact(w *chain.Walk, p uint32, headSeq uint64, key consent.Key, recCmd *redis.StringCmd, histCmd *redis.StringSliceCmd) error {
	var (
		rec             *consent.Record
		recType, unread bool
	)
	v, err := recCmd.Bytes()
	switch {
	case err == nil:
		r, seq, err := decodeStoredRecord(p, v)
		if err != nil {
			w.Problem(seq, "a contact's record is corrupt")
			unread = true
			break
		}
		rec = &r
	case wrongType(err):
		recType, unread = true, true
	case !errors.Is(err, redis.Nil):
		return redisErr(err)
	}
	items, err := histCmd.Result()
	switch {
	case wrongType(err):
		// Named at the record's event, where the operator can find it.
		var seq uint64
		if rec != nil {
			seq = rec.Token.Seq
		}
		w.Problem(seq, replaced("a contact's history", "list"))
		unread = true
	case err != nil:
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
	if recType {
		// Named at the history's newest event, where the operator can find it.
		var seq uint64
		if len(history) > 0 {
			seq = history[len(history)-1].seq
		}
		w.Problem(seq, replaced("a contact's record", "string"))
	}
	checkContact(w, headSeq, key, rec, history, !unread)
	return nil
}
