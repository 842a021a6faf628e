//go:build !race

// Allocation counts only mean something without the race detector (it makes
// sync.Pool drop items at random), so this file is built only without it;
// scripts/test runs it in its own pass without -race.

package contactkey_test

import (
	"testing"

	"github.com/consentd/consentd/internal/contactkey"
)

func TestKeyAllocatesNothingForASCII(t *testing.T) {
	k, _ := contactkey.New(secret)
	if n := testing.AllocsPerRun(100, func() { k.Key("ada@example.com") }); n != 0 {
		t.Errorf("Key allocates %v times, want 0", n)
	}
}
