package store

import (
	"bytes"
	"context"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
	bolt "go.etcd.io/bbolt"

	"github.com/consentd/consentd/consent"
)

// RecordKeys calls fn with the key of every contact that has a record, a
// chunk of keys per read transaction (as VerifyHistory reads), for tools
// that must account for every record (consentctl migrate).
func (s *Embedded) RecordKeys(ctx context.Context, fn func(consent.Key) error) error {
	var next []byte
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		var keys []consent.Key
		err := s.db.View(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketContacts).Cursor()
			k, _ := c.First()
			if next != nil {
				k, _ = c.Seek(next)
			}
			next = nil
			for ; k != nil; k, _ = c.Next() {
				if len(keys) == verifyChunk {
					next = bytes.Clone(k)
					return nil
				}
				var key consent.Key
				if len(k) == len(key)+1 && k[len(key)] == tagRecord {
					copy(key[:], k)
					keys = append(keys, key)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range keys {
			if err := fn(k); err != nil {
				return err
			}
		}
		if next == nil {
			return nil
		}
	}
}

// RecordKeys calls fn with the key of every contact that has a record, by
// SCAN on every master: concurrently on a Cluster, so fn must be safe for
// concurrent use there. Each round trip has ctx's deadline.
func (s *Redis) RecordKeys(ctx context.Context, fn func(consent.Key) error) error {
	return s.forEachNode(ctx, func(ctx context.Context, node *redis.Client) error {
		iter := node.Scan(ctx, 0, "{*}:r:*", 1000).Iterator()
		for iter.Next(ctx) {
			k := iter.Val()
			tag, rest, ok := strings.Cut(k, "}:r:")
			var key consent.Key
			if !ok || len(rest) != len(key) || !strings.HasPrefix(tag, "{") {
				continue
			}
			if p, err := strconv.ParseUint(tag[1:], 10, 32); err != nil || uint32(p) >= s.cfg.Partitions {
				continue
			}
			copy(key[:], rest)
			if err := fn(key); err != nil {
				return err
			}
		}
		return redisErr(iter.Err())
	})
}
