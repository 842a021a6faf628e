package store

import (
	"fmt"
	"testing"

	"github.com/consentd/consentd/internal/redistest"
)

// TestKeySlot: Audit finds which Cluster node serves a partition by its
// slot; keySlot must agree with CLUSTER KEYSLOT.
func TestKeySlot(t *testing.T) {
	c := redistest.StartCluster(t, 1)
	keys := append([]string{partitionsKey, secretKey, layoutKey, "foo", "{}x", "a{}b{c}", "{user1000}.following"}, "")
	for p := range uint32(64) {
		keys = append(keys, markerKey(p), fmt.Sprint("x{", p, "}"))
	}
	for _, k := range keys {
		if got, want := keySlot(k), c.KeySlot(t, k); got != want {
			t.Errorf("keySlot(%q) = %d, CLUSTER KEYSLOT says %d", k, got, want)
		}
	}
}
