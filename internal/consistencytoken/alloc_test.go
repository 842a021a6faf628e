//go:build !race

// Allocation counts only mean something without the race detector (it makes
// sync.Pool drop items at random), so this file is built only without it;
// scripts/test runs it in its own pass without -race.

package consistencytoken_test

import (
	"testing"

	"github.com/consentd/consentd/consent"
)

// Every Check answer carries an issued token, and every request with one is
// checked: both are on the hot path.
func TestIssueAndIssuedAllocateNothing(t *testing.T) {
	iss := newIssuer(t, secret, "store-a")
	tok := iss.Issue(consent.ConsistencyToken{Partition: 3, Seq: 42})
	if n := testing.AllocsPerRun(100, func() { iss.Issue(consent.ConsistencyToken{Partition: 3, Seq: 43}) }); n != 0 {
		t.Errorf("Issue allocates %v times, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { iss.Issued(tok) }); n != 0 {
		t.Errorf("Issued allocates %v times, want 0", n)
	}
}
