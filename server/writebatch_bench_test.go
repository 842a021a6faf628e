package server_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/consentd/consentd/internal/testserver"
	pb "github.com/consentd/consentd/proto/consent/v1"
)

// BenchmarkWriteBatch is a bulk import's server side in one process: gRPC
// over bufconn, parsing and keying 2,000 grants of new contacts, and the
// embedded store's batch write (one fsync), reported as writes/s.
func BenchmarkWriteBatch(b *testing.B) {
	env := testserver.Start(b, testserver.Options{})
	cons := pb.NewConsentServiceClient(env.Conn)
	captured := timestamppb.New(time.Now().Add(-24 * time.Hour))
	const size = 2000
	batch := func(n int) *pb.WriteBatchRequest {
		req := &pb.WriteBatchRequest{Writes: make([]*pb.BatchWrite, size)}
		for i := range req.Writes {
			req.Writes[i] = &pb.BatchWrite{Write: &pb.BatchWrite_Grant{Grant: &pb.GrantRequest{
				Contact: fmt.Sprintf("bulk-%d-%d@example.com", n, i), Purposes: []string{"email_marketing"},
				Method: pb.Method_METHOD_CHECKBOX, CapturedAt: captured, EvidenceRef: "form:signup", NoticeVersion: "2026-05",
				Actor: "consentctl import", RequestId: fmt.Sprintf("import-%08d%08d", n, i)}}}
		}
		return req
	}
	n := 0
	for b.Loop() {
		b.StopTimer()
		req := batch(n)
		n++
		b.StartTimer()
		resp, err := cons.WriteBatch(context.Background(), req)
		if err != nil {
			b.Fatal(err)
		}
		if r := resp.GetResults()[size-1]; r.GetCode() != 0 {
			b.Fatalf("write refused: %s", r.GetMessage())
		}
	}
	b.ReportMetric(float64(n*size)/b.Elapsed().Seconds(), "writes/s")
}
