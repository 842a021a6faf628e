package store_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"testing"
	"time"

	"github.com/consentd/consentd/consent"
	"github.com/consentd/consentd/internal/redisproc"
	"github.com/consentd/consentd/internal/redistest"
	"github.com/consentd/consentd/store"
	"github.com/consentd/consentd/store/storetest"
)

// batchOf is n grants of random contacts, as a bulk import sends them:
// keyed hashes are random, so they land all over the store's key space.
func batchOf(n, b int) []consent.Write {
	ws := make([]consent.Write, n)
	proof := consent.Proof{Method: consent.MethodCheckbox, Source: consent.SourceFirstParty, CapturedAt: time.Now().Add(-time.Hour), EvidenceRef: "form:1", NoticeVersion: "2026-05", Actor: "import"}
	for i := range ws {
		var k consent.Key
		rand.Read(k[:])
		ws[i] = consent.Write{Key: k, Event: consent.Event{Kind: consent.EventGrant, Purposes: []string{"email_marketing"}, Proof: proof, RequestID: fmt.Sprintf("import-%d-%d", b, i)}}
		rand.Read(ws[i].Fingerprint[:])
	}
	return ws
}

// BenchmarkApplyBatch* measure bulk writes in batches of 10,000 (what
// consentctl import sends), reported as writes/s.
func BenchmarkApplyBatchEmbedded(b *testing.B) {
	s, err := store.OpenEmbedded(b.TempDir(), storetest.ChainKey())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	benchApplyBatch(b, s)
}

func BenchmarkApplyBatchRedis(b *testing.B) {
	srv := redistest.Start(b, redisproc.Options{})
	s, err := store.OpenRedis(context.Background(), srv.Client(b), store.RedisConfig{Partitions: 16, SecretCheck: "x", Chain: storetest.ChainKey(), Init: true})
	if err != nil {
		b.Fatal(err)
	}
	benchApplyBatch(b, s)
}

func benchApplyBatch(b *testing.B, s storetest.Store) {
	const size = 10000
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		ws := batchOf(size, i)
		b.StartTimer()
		if _, _, err := s.ApplyBatch(context.Background(), ws); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "writes/s")
}
