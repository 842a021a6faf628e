package server

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"

	"github.com/consentd/consentd/consent"
)

// A link's withdrawal of one version of a record has the id it had before
// consistency tokens carried a tag, so that in a rolling upgrade two clicks
// on sidecars either side of it are still one request.
func TestUnsubscribeRequestIDOutlivesTheTokenFormat(t *testing.T) {
	id := func(s string) string {
		sum := sha256.Sum256([]byte(s))
		return "unsubscribe-" + hex.EncodeToString(sum[:16])
	}
	tests := []struct {
		name string
		rec  *consent.Record
		want string
	}{
		// AQMq is the version 1 text of partition 3, sequence 42.
		{"a record", &consent.Record{Token: consent.ConsistencyToken{Partition: 3, Seq: 42}}, id("link\x00AQMq")},
		{"an unknown contact", &consent.Record{}, id("link\x00")},
		{"no record", nil, id("link")},
	}
	for _, tt := range tests {
		if got := unsubscribeRequestID("link", tt.rec); got != tt.want {
			t.Errorf("%s: unsubscribeRequestID = %s, want %s", tt.name, got, tt.want)
		}
	}
}
