package consistencytoken_test

import (
	"testing"

	"github.com/consentd/consentd/consent"
	"github.com/consentd/consentd/internal/consistencytoken"
)

// BenchmarkIssue is what every Check answer pays for its token's tag.
func BenchmarkIssue(b *testing.B) {
	iss, err := consistencytoken.NewIssuer(secret, "bench-store")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	var sink uint64
	for i := 0; b.Loop(); i++ {
		sink += iss.Issue(consent.ConsistencyToken{Partition: 3, Seq: uint64(i) + 1}).Tag
	}
	_ = sink
}
