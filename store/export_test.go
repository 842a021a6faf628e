package store

import (
	"bytes"
	"context"
	"fmt"
	"strconv"

	bolt "go.etcd.io/bbolt"

	"github.com/consentd/consentd/consent"
)

// SetAuditAttempts makes Audit read a node at most n times to find its
// counters still, so a test can make it judge by bounds under writes.
func SetAuditAttempts(s *Redis, n int) { s.audit.attempts = n }

// ClaimOnly claims the request ids of ws and writes nothing: a sidecar that
// died between the claim and the write.
func ClaimOnly(ctx context.Context, s *Redis, ws ...consent.Write) error {
	_, err := s.claimAll(ctx, ws)
	return err
}

// RedisErr is redisErr: how the store classes an error from Redis.
var RedisErr = redisErr

// The tampering of storetest.Tamperer, for each store: edits made beside
// the store, as someone with access to its storage (not its chain key)
// would make them.

// EditEmbeddedEntry replaces the history entry of key's event seq.
func EditEmbeddedEntry(s *Embedded, key consent.Key, seq uint64, edit func([]byte) []byte) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketContacts)
		v := b.Get(boltEventKey(key, seq))
		if v == nil {
			return fmt.Errorf("no event %d of %v", seq, key)
		}
		return b.Put(boltEventKey(key, seq), edit(bytes.Clone(v)))
	})
}

// EditEmbeddedRecord replaces key's record.
func EditEmbeddedRecord(s *Embedded, key consent.Key, edit func(consent.Record) consent.Record) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketContacts)
		rec, err := DecodeRecord(b.Get(boltRecordKey(key)))
		if err != nil {
			return err
		}
		rec = edit(rec)
		return b.Put(boltRecordKey(key), EncodeRecord(nil, &rec))
	})
}

// EditRedisEntry replaces the history entry of key's event tok.
func EditRedisEntry(ctx context.Context, s *Redis, key consent.Key, tok consent.ConsistencyToken, edit func([]byte) []byte) error {
	h := historyKey(tok.Partition, key)
	items, err := s.rdb.LRange(ctx, h, 0, -1).Result()
	if err != nil {
		return err
	}
	for i, item := range items {
		if seq, entry, err := splitSeq([]byte(item)); err == nil && seq == tok.Seq {
			v := append(strconv.AppendUint(nil, seq, 10), ':')
			return s.rdb.LSet(ctx, h, int64(i), append(v, edit(entry)...)).Err()
		}
	}
	return fmt.Errorf("no event %+v of %v", tok, key)
}

// EditRedisRecord replaces key's record.
func EditRedisRecord(ctx context.Context, s *Redis, key consent.Key, edit func(consent.Record) consent.Record) error {
	p := key.Partition(s.cfg.Partitions)
	v, err := s.rdb.Get(ctx, recordKey(p, key)).Bytes()
	if err != nil {
		return err
	}
	rec, seq, err := decodeStoredRecord(p, v)
	if err != nil {
		return err
	}
	rec = edit(rec)
	rec.Token = consent.ConsistencyToken{}
	return s.rdb.Set(ctx, recordKey(p, key), EncodeRecord(append(strconv.AppendUint(nil, seq, 10), ':'), &rec), 0).Err()
}
