package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	consent "github.com/consentd/consentd"
	"github.com/consentd/consentd/contactkey"
	"github.com/consentd/consentd/store"
)

// population describes the synthetic contacts: contact i is
// "contact<i>@bench.example"; for each (contact, purpose) pair a seeded
// draw decides granted (share granted), then a share of those withdrawn and
// a share stale (captured 30 months ago).
type population struct {
	Contacts  int
	Granted   float64
	Withdrawn float64
	Stale     float64
	Seed      uint64
}

func contactName(i int) string { return fmt.Sprintf("contact%d@bench.example", i) }

// loadEmbedded writes the population straight into a new embedded store in
// dir (with its secret), in large batches: what takes a sidecar hours one
// fsynced RPC at a time takes seconds in one transaction per batch.
func loadEmbedded(ctx context.Context, dir string, p population, progress func(done int)) error {
	secret, err := contactkey.LoadOrCreateSecret(filepath.Join(dir, "secret"))
	if err != nil {
		return err
	}
	keys, err := contactkey.New(secret)
	if err != nil {
		return err
	}
	st, err := store.OpenEmbedded(dir)
	if err != nil {
		return err
	}
	defer st.Close()
	purposes := consent.DefaultPurposes()
	rng := rand.New(rand.NewPCG(p.Seed, 0))
	now := time.Now().UTC()
	const batch = 2000
	var ws []consent.Write
	flush := func() error {
		if len(ws) == 0 {
			return nil
		}
		_, errs, err := st.ApplyBatch(ctx, ws)
		if err != nil {
			return err
		}
		for _, e := range errs {
			if e != nil {
				return e
			}
		}
		ws = ws[:0]
		return nil
	}
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
			ws = append(ws, consent.Write{Key: k, Event: consent.Event{Kind: consent.EventGrant, Purposes: []string{pu.Name},
				Proof: consent.Proof{Method: consent.MethodCheckbox, Source: consent.SourceFirstParty, CapturedAt: captured, RecordedAt: captured,
					EvidenceRef: "bench", Actor: "consentbench"}}})
			if rng.Float64() < p.Withdrawn {
				ws = append(ws, consent.Write{Key: k, Event: consent.Event{Kind: consent.EventWithdraw, Purposes: []string{pu.Name},
					Proof: consent.Proof{CapturedAt: captured.Add(time.Hour), RecordedAt: captured.Add(time.Hour)}}})
			}
		}
		if len(ws) >= batch {
			if err := flush(); err != nil {
				return err
			}
			progress(i + 1)
		}
	}
	if err := flush(); err != nil {
		return err
	}
	progress(p.Contacts)
	return nil
}

// tempDir makes a scratch directory the run removes when it ends.
func tempDir() (string, func(), error) {
	dir, err := os.MkdirTemp("", "consentbench-")
	if err != nil {
		return "", nil, err
	}
	return dir, func() { os.RemoveAll(dir) }, nil
}
