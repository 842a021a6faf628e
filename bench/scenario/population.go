package scenario

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"github.com/consentd/consentd/consent"
	"github.com/consentd/consentd/internal/chain"
	"github.com/consentd/consentd/internal/contactkey"
	"github.com/consentd/consentd/store"
)

// Population describes the synthetic contacts: contact i is
// "contact<i>@bench.example"; for each (contact, purpose) pair a seeded
// draw decides granted (share granted), then a share of those withdrawn and
// a share stale (captured 30 months ago).
type Population struct {
	Contacts  int
	Granted   float64
	Withdrawn float64
	Stale     float64
	Seed      uint64
}

func contactName(i int) string { return fmt.Sprintf("contact%d@bench.example", i) }

// each generates the population's writes in order; progress is told after
// each contact.
func (p Population) each(keys *contactkey.Keyer, fn func(w consent.Write) error, progress func(done int)) error {
	purposes := consent.DefaultPurposes()
	rng := rand.New(rand.NewPCG(p.Seed, 0))
	now := time.Now().UTC()
	for i := range p.Contacts {
		k, err := keys.Key(contactName(i))
		if err != nil {
			return err
		}
		for _, pu := range purposes {
			if rng.Float64() >= p.Granted {
				continue
			}
			captured := now.Add(-24 * time.Hour)
			if rng.Float64() < p.Stale {
				captured = now.AddDate(0, -30, 0)
			}
			err := fn(consent.Write{Key: k, Event: consent.Event{Kind: consent.EventGrant, Purposes: []string{pu.Name},
				Proof: consent.Proof{Method: consent.MethodCheckbox, Source: consent.SourceFirstParty, CapturedAt: captured, RecordedAt: captured,
					EvidenceRef: "bench", Actor: "consentbench"}}})
			if err != nil {
				return err
			}
			if rng.Float64() < p.Withdrawn {
				err := fn(consent.Write{Key: k, Event: consent.Event{Kind: consent.EventWithdraw, Purposes: []string{pu.Name},
					Proof: consent.Proof{CapturedAt: captured.Add(time.Hour), RecordedAt: captured.Add(time.Hour)}}})
				if err != nil {
					return err
				}
			}
		}
		if (i+1)%5000 == 0 || i+1 == p.Contacts {
			progress(i + 1)
		}
	}
	return nil
}

// keyer returns the contact keys and history chain key a sidecar with the
// secret in secretPath uses.
func keyer(secretPath string) (*contactkey.Keyer, *chain.Key, error) {
	secret, err := contactkey.LoadOrCreateSecret(secretPath)
	if err != nil {
		return nil, nil, err
	}
	keys, err := contactkey.New(secret)
	if err != nil {
		return nil, nil, err
	}
	ch, err := chain.NewKey(secret)
	return keys, ch, err
}

// loadEmbedded writes the population straight into a new embedded store in
// dir (with its secret), in large batches: what takes a sidecar hours one
// fsynced RPC at a time takes seconds in one transaction per batch.
func loadEmbedded(ctx context.Context, dir string, p Population, progress func(done int)) error {
	keys, ch, err := keyer(filepath.Join(dir, "secret"))
	if err != nil {
		return err
	}
	st, err := store.OpenEmbedded(dir, ch)
	if err != nil {
		return err
	}
	defer st.Close()
	var ws []consent.Write
	flush := func() error {
		_, errs, err := st.ApplyBatch(ctx, ws)
		if err != nil {
			return err
		}
		if err := errors.Join(errs...); err != nil {
			return err
		}
		ws = ws[:0]
		return nil
	}
	err = p.each(keys, func(w consent.Write) error {
		ws = append(ws, w)
		if len(ws) < 2000 {
			return nil
		}
		return flush()
	}, progress)
	if err != nil {
		return err
	}
	return flush()
}

// loadRedis writes the population through the Redis store, many writes in
// flight at once. The Redis is a scratch one: the load initialises it when
// it is new. ownRedis says it is the benchmark's own, which loads with
// appendfsync no.
func loadRedis(ctx context.Context, rdb redis.UniversalClient, secretPath string, partitions uint32, ownRedis bool, p Population, progress func(done int)) error {
	keys, ch, err := keyer(secretPath)
	if err != nil {
		return err
	}
	cfg := store.RedisConfig{Partitions: partitions, SecretCheck: keys.Check(), Chain: ch, OperatorChecksSettings: ownRedis}
	st, err := store.OpenRedis(ctx, rdb, cfg)
	if errors.Is(err, store.ErrNotInitialised) {
		cfg.Init = true
		st, err = store.OpenRedis(ctx, rdb, cfg)
	}
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	writes := make(chan consent.Write, 1024)
	for range 32 {
		g.Go(func() error {
			for w := range writes {
				if _, err := st.Apply(gctx, w); err != nil {
					return err
				}
			}
			return nil
		})
	}
	g.Go(func() error {
		defer close(writes)
		return p.each(keys, func(w consent.Write) error {
			select {
			case writes <- w:
				return nil
			case <-gctx.Done():
				return gctx.Err()
			}
		}, progress)
	})
	return g.Wait()
}

// tempDir makes a scratch directory the run removes when it ends.
func tempDir() (string, func(), error) {
	dir, err := os.MkdirTemp("", "consentbench-")
	if err != nil {
		return "", nil, err
	}
	return dir, func() { os.RemoveAll(dir) }, nil
}
