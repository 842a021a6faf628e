package store_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/consentd/consentd/consent"
	"github.com/consentd/consentd/store"
)

const claimPartitions = 16

// spread is a contact whose partition follows j.
func spread(j int) consent.Key {
	k := consent.Key{0: byte(j), 1: byte(j >> 8), 2: 0xc1}
	binary.BigEndian.PutUint32(k[8:12], uint32(j))
	return k
}

// apart returns a contact of i's making whose partition is served by
// another node than first's (on a standalone server: another partition),
// so no one script can see both.
func apart(t *testing.T, d *deployment, first consent.Key, i int) consent.Key {
	t.Helper()
	_, node := d.nodeOf(t, store.RecordKey(claimPartitions, first))
	for j := i; j < i+1000; j++ {
		k := spread(j)
		if k.Partition(claimPartitions) == first.Partition(claimPartitions) {
			continue
		}
		if _, n := d.nodeOf(t, store.RecordKey(claimPartitions, k)); d.cluster == nil || n != node {
			return k
		}
	}
	t.Fatal("no contact on another node")
	return consent.Key{}
}

func as(caller string, w consent.Write) consent.Write {
	w.Caller = caller
	return w
}

func wantReused(t *testing.T, what string, err error) {
	t.Helper()
	var fe *consent.FieldError
	if !errors.As(err, &fe) || fe.Field != "request_id" {
		t.Errorf("%s: %v, want INVALID_ARGUMENT naming request_id", what, err)
	}
}

// TestRedisRequestIDAcrossSidecars: two sidecars on one Redis (standalone,
// and a Cluster with the two contacts on different nodes): a caller's
// request id is refused for another contact on the other sidecar, its
// retry there replays, another caller's same id is its own; two requests
// racing with one id on the two sidecars apply one; and a sidecar that
// died between claiming an id and writing leaves a retry that applies
// once.
func TestRedisRequestIDAcrossSidecars(t *testing.T) {
	ctx := context.Background()
	both(t, func(t *testing.T, d *deployment) {
		cfg := store.RedisConfig{Partitions: claimPartitions}
		a := d.fresh(t, cfg)
		b := openRedis(t, d.rdb, cfg)
		x := spread(1)
		y := apart(t, d, x, 2)

		tok, err := a.Apply(ctx, as("crm", grantOf(x, "r1")))
		if err != nil {
			t.Fatal(err)
		}
		_, err = b.Apply(ctx, as("crm", grantOf(y, "r1")))
		wantReused(t, "the same id for another contact on the other sidecar", err)
		if r, _ := b.Get(ctx, y); len(r.Purposes) != 0 {
			t.Errorf("the refused write changed its contact: %+v", r)
		}
		if again, err := b.Apply(ctx, as("crm", grantOf(x, "r1"))); err != nil || again != tok {
			t.Errorf("retry on the other sidecar: %+v, %v; want the first token %+v", again, err, tok)
		}
		if _, err := b.Apply(ctx, as("mailer", grantOf(y, "r1"))); err != nil {
			t.Errorf("another caller's same id: %v, want applied", err)
		}

		// Races: for each id, a on x_i and b on y_i at once.
		const races = 20
		var wg sync.WaitGroup
		errs := make([][2]error, races)
		keys := make([][2]consent.Key, races)
		for i := range races {
			keys[i] = [2]consent.Key{spread(1000 + i), apart(t, d, spread(1000+i), 2000+100*i)}
			for side, s := range []*store.Redis{a, b} {
				wg.Go(func() {
					_, errs[i][side] = s.Apply(ctx, as("crm", grantOf(keys[i][side], fmt.Sprint("race", i))))
				})
			}
		}
		wg.Wait()
		for i := range races {
			won := 0
			for side := range 2 {
				r, err := a.Get(ctx, keys[i][side])
				if err != nil {
					t.Fatal(err)
				}
				switch {
				case errs[i][side] == nil && len(r.Purposes) == 1:
					won++
				case errs[i][side] != nil && len(r.Purposes) == 0:
					wantReused(t, fmt.Sprint("race ", i), errs[i][side])
				default:
					t.Errorf("race %d, side %d: %v with record %+v", i, side, errs[i][side], r)
				}
			}
			if won != 1 {
				t.Errorf("race %d: %d of 2 requests with one id applied, want 1 (%v)", i, won, errs[i])
			}
		}

		// A sidecar dies between claiming an id and writing.
		w := as("crm", withdrawalOf(x, "crashed"))
		if err := store.ClaimOnly(ctx, a, w); err != nil {
			t.Fatal(err)
		}
		first, err := b.Apply(ctx, w)
		if err != nil {
			t.Fatalf("the retry after a crash between claim and write: %v", err)
		}
		if again, err := a.Apply(ctx, w); err != nil || again != first {
			t.Errorf("a second retry: %+v, %v; want %+v", again, err, first)
		}
		_, err = a.Apply(ctx, as("crm", withdrawalOf(y, "crashed")))
		wantReused(t, "another request with the crashed id", err)
		evs, _, err := a.Events(ctx, x, consent.ConsistencyToken{}, 100)
		if err != nil {
			t.Fatal(err)
		}
		if n := len(evs); n != 2 { // the grant r1 and one withdrawal
			t.Errorf("%d events for the contact, want 2 (nothing applied twice)", n)
		}
		parts, err := a.VerifyHistory(ctx)
		if err != nil || !consent.Intact(parts) {
			t.Errorf("VerifyHistory: %v %v", parts, err)
		}
	})
}
