package scenario

import (
	"context"
	"os"

	"github.com/redis/go-redis/v9"

	"github.com/consentd/consentd/bench"
	"github.com/consentd/consentd/internal/contactkey"
	"github.com/consentd/consentd/store"
)

func redisClient(url string) (*redis.Client, error) {
	o, err := redis.ParseURL(url)
	if err != nil {
		return nil, err
	}
	if pw := os.Getenv("CONSENTD_REDIS_PASSWORD"); pw != "" {
		o.Password = pw
	}
	return redis.NewClient(o), nil
}

// directRead is what a sender does without consentd: key the contact and
// read its record from Redis itself (it would still have to decide).
func directRead(ctx context.Context, rdb *redis.Client, keys *contactkey.Keyer, partitions uint32, contacts *bench.Contacts) error {
	k, err := keys.Key(contacts.Next())
	if err != nil {
		return err
	}
	err = rdb.Get(ctx, store.RecordKey(partitions, k)).Err()
	if err == redis.Nil {
		return nil
	}
	return err
}
