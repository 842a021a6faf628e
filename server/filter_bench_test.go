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
func BenchmarkFilterAudienceWarm(b *testing.B) {
	env := testserver.Start(b, testserver.Options{})
	ctx := context.Background()
	cons := pb.NewConsentServiceClient(env.Conn)
	audience := make([]string, 10000)
	for i := range audience {
		audience[i] = fmt.Sprintf("contact-%07d@example.com", i)
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
