package server_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"google.golang.org/grpc"

	"github.com/consentd/consentd/client"
	"github.com/consentd/consentd/internal/testserver"
	pb "github.com/consentd/consentd/proto/consent/v1"
)

// BenchmarkFilterAudienceWarm streams an audience through FilterAudience
// with every record cached: the per-contact cost of the audience path
// (keying, cache, decision, the stream both ways). b.N counts contacts.
// The audience is of email addresses, or of E.164 numbers (a phone number
// is keyed through the phone library's parse once, then its memo).
func BenchmarkFilterAudienceWarm(b *testing.B) {
	b.Run("email", func(b *testing.B) {
		benchmarkFilterAudienceWarm(b, func(i int) string { return fmt.Sprintf("contact-%07d@example.com", i) })
	})
	b.Run("e164", func(b *testing.B) {
		// UK mobile numbers: 07700 900000 to 900999 are Ofcom's drama
		// range, which the library calls invalid, so 07400 onwards.
		benchmarkFilterAudienceWarm(b, func(i int) string { return fmt.Sprintf("+4474%08d", i) })
	})
}

func benchmarkFilterAudienceWarm(b *testing.B, contact func(int) string) {
	env := testserver.Start(b, testserver.Options{})
	ctx := context.Background()
	cons := pb.NewConsentServiceClient(env.Conn)
	audience := make([]string, 10000)
	for i := range audience {
		audience[i] = contact(i)
		if i%3 == 0 {
			if _, err := cons.Grant(ctx, &pb.GrantRequest{Contact: audience[i], Purposes: []string{"ad_retargeting"}, Method: pb.Method_METHOD_CHECKBOX}); err != nil {
				b.Fatal(err)
			}
		}
	}
	cl, err := client.New("passthrough:///bufconn", client.WithDialOptions(grpc.WithContextDialer(env.Dial)))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cl.Close() })
	pass := func(n int) {
		var got uint64
		for len(audience) < n {
			audience = append(audience, audience...)
		}
		sum, err := cl.Filter(ctx, "ad_retargeting", slices.Values(audience[:n]), func(string) error { got++; return nil })
		if err != nil || sum.Total != uint64(n) || got != sum.Allowed {
			b.Fatalf("summary %+v, %d allowed seen, err %v", sum, got, err)
		}
	}
	pass(len(audience)) // fill the cache
	b.ReportAllocs()
	b.ResetTimer()
	pass(b.N)
}
