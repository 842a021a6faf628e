package server_test

import (
	"context"
	"testing"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/consentd/consentd/internal/testserver"
	pb "github.com/consentd/consentd/proto/consent/v1"
)

// BenchmarkCheckWarm is the whole hot path in one process: gRPC over
// bufconn, validation, keying, a cache hit, the decision.
func BenchmarkCheckWarm(b *testing.B) {
	env := testserver.Start(b, testserver.Options{})
	ctx := context.Background()
	cons := pb.NewConsentServiceClient(env.Conn)
	check := pb.NewCheckServiceClient(env.Conn)
	if _, err := cons.Grant(ctx, &pb.GrantRequest{Contact: "bench@example.com", Purposes: []string{"email_marketing"}, Method: pb.Method_METHOD_CHECKBOX}); err != nil {
		b.Fatal(err)
	}
	req := &pb.CheckRequest{Contact: "bench@example.com", Purpose: "email_marketing"}
	for range 100 { // warm the cache (ristretto admits asynchronously)
		if _, err := check.Check(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
	hits := env.Cache.Stats().Hits.Load()
	b.ReportAllocs()
	for b.Loop() {
		resp, err := check.Check(ctx, req)
		if err != nil || resp.GetDecision() != pb.Decision_DECISION_ALLOW {
			b.Fatalf("%v %v", resp, err)
		}
	}
	if got := env.Cache.Stats().Hits.Load() - hits; got < uint64(b.N) {
		b.Fatalf("%d of %d checks hit the cache", got, b.N)
	}
}

// BenchmarkHealthFloor is the same transport with the health check, the
// floor a Check cannot beat.
func BenchmarkHealthFloor(b *testing.B) {
	env := testserver.Start(b, testserver.Options{})
	ctx := context.Background()
	hc := healthpb.NewHealthClient(env.Conn)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			b.Fatal(err)
		}
	}
}
