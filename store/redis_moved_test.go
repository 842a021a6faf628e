package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/consentd/consentd/consent"
	"github.com/consentd/consentd/store"
)

// TestRedisMovedTo: a rectified record keeps where it moved through the
// store's encoding (Record.MovedTo), loses it with the link, and its
// history verifies intact either way (VerifyHistory refolds MovedTo).
func TestRedisMovedTo(t *testing.T) {
	d := standaloneDeployment(t)
	s := d.fresh(t, store.RedisConfig{Partitions: identityPartitions})
	ctx := context.Background()
	old, nu := contact(1), contact(2)
	moveTo := consent.Link{Key: nu, Kind: consent.IDEmail}
	relate := func(kind consent.EventKind, other consent.Link, reqID string) consent.Write {
		return consent.Write{Key: old, Event: consent.Event{Kind: kind, Other: other, RequestID: reqID, Proof: consent.Proof{CapturedAt: time.Now(), RecordedAt: time.Now()}}}
	}
	steps := []struct {
		name string
		w    consent.Write
		want consent.Key
	}{
		{"rectified", relate(consent.EventRectifyTo, moveTo, "move"), nu},
		{"withdrawn after", withdrawalOf(old, "stop"), nu},
		{"unlinked", relate(consent.EventUnlink, moveTo, "unlink"), consent.Key{}},
	}
	apply(t, s, grantOf(old, "grant"))
	for _, st := range steps {
		apply(t, s, st.w)
		rec, err := s.Get(ctx, old)
		if err != nil {
			t.Fatal(err)
		}
		if rec.MovedTo != st.want {
			t.Errorf("%s: MovedTo = %v, want %v", st.name, rec.MovedTo, st.want)
		}
		parts, err := s.VerifyHistory(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !consent.Intact(parts) {
			t.Errorf("%s: history not intact: %+v", st.name, parts)
		}
	}
}
