package server_test

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/consentd/consentd/internal/daemontest"
	"github.com/consentd/consentd/internal/testserver"
	pb "github.com/consentd/consentd/proto/consent/v1"
	"github.com/consentd/consentd/server"
)

// grantAll grants email_marketing to n contacts and returns them.
func grantAll(t *testing.T, c *clients, n int) []string {
	t.Helper()
	contacts := make([]string, n)
	writes := make([]*pb.BatchWrite, n)
	for i := range contacts {
		contacts[i] = fmt.Sprintf("slow%04d@example.com", i)
		writes[i] = &pb.BatchWrite{Write: &pb.BatchWrite_Grant{Grant: &pb.GrantRequest{Contact: contacts[i],
			Purposes: []string{"email_marketing"}, Method: pb.Method_METHOD_CHECKBOX, RequestId: contacts[i]}}}
	}
	if _, err := c.cons.WriteBatch(ctx(t), &pb.WriteBatchRequest{Writes: writes}); err != nil {
		t.Fatal(err)
	}
	return contacts
}

// TestFilterAudienceSlowReader: a client that sends an audience and reads
// none of the answers makes its stream hold no more than its window; once
// it reads, every answer comes, in order, and the stream holds nothing.
func TestFilterAudienceSlowReader(t *testing.T) {
	const (
		window   = 16 << 10 // one message of 100 contacts at a time
		messages = 300
	)
	env := testserver.Start(t, testserver.Options{Audience: server.AudienceLimits{Window: window}})
	c := &clients{env: env, check: pb.NewCheckServiceClient(env.Conn), cons: pb.NewConsentServiceClient(env.Conn)}
	contacts := grantAll(t, c, 100)
	// A client whose gRPC takes in only 64 KiB of answers it does not read.
	conn, err := grpc.NewClient("passthrough:///bufnet", grpc.WithContextDialer(env.Dial),
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithStaticStreamWindowSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stream, err := pb.NewCheckServiceClient(conn).FilterAudience(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	var sent atomic.Int64
	sendErr := daemontest.SendAudience(stream, contacts, messages, &sent)

	// Until what the stream holds stops changing: the answers the client
	// does not read have filled its window and gRPC's write quota.
	var peak, last int64 = 0, -1
	for still := 0; still < 10; {
		time.Sleep(50 * time.Millisecond)
		now, p := env.Server.AudienceHeld()
		peak = max(peak, p)
		if now == last && now > 0 {
			still++
		} else {
			last, still = now, 0
		}
	}
	t.Logf("the stream holds %d bytes, at most %d; %d of %d messages sent", last, peak, sent.Load(), messages)
	if peak > window {
		t.Errorf("a stream whose client does not read held %d bytes, more than its window of %d", peak, window)
	}

	got, sum := daemontest.RecvAudience(t, stream, contacts, nil)
	if sum.GetTotal() != messages*100 || sum.GetAllowed() != messages*100 {
		t.Errorf("summary %v, want %d of %d allowed", sum, messages*100, messages*100)
	}
	if err := <-sendErr; err != nil {
		t.Fatal(err)
	}
	if got != messages*100 {
		t.Errorf("%d contacts allowed, want %d", got, messages*100)
	}
	if now, _ := env.Server.AudienceHeld(); now != 0 {
		t.Errorf("after the stream: %d bytes held, want 0", now)
	}
}

// TestFilterAudienceLargeMessage: a message larger than the window is
// still answered, read alone.
func TestFilterAudienceLargeMessage(t *testing.T) {
	env := testserver.Start(t, testserver.Options{Audience: server.AudienceLimits{Window: 1 << 10}})
	c := &clients{env: env, check: pb.NewCheckServiceClient(env.Conn), cons: pb.NewConsentServiceClient(env.Conn)}
	contacts := grantAll(t, c, 1000)
	stream, err := c.check.FilterAudience(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	sendErr := daemontest.SendAudience(stream, contacts, 3, nil)
	allowed, sum := daemontest.RecvAudience(t, stream, contacts, nil)
	if err := <-sendErr; err != nil {
		t.Fatal(err)
	}
	if allowed != 3000 || sum.GetTotal() != 3000 {
		t.Errorf("%d allowed, summary %v; want 3000 of 3000", allowed, sum)
	}
}

// TestFilterAudienceStreamCap: beyond the cap, a new stream is refused
// with RESOURCE_EXHAUSTED naming the limit and its flag; when a stream
// ends, its place is free again.
func TestFilterAudienceStreamCap(t *testing.T) {
	env := testserver.Start(t, testserver.Options{Audience: server.AudienceLimits{MaxStreams: 2}})
	check := pb.NewCheckServiceClient(env.Conn)
	open := func() (pb.CheckService_FilterAudienceClient, error) {
		s, err := check.FilterAudience(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		s.Send(&pb.FilterAudienceRequest{Purpose: "email_marketing", Contacts: []string{"a@example.com"}})
		_, err = s.Recv()
		return s, err
	}
	first, err := open()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := open(); err != nil {
		t.Fatal(err)
	}
	_, err = open()
	if st := status.Convert(err); st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "(--audience-max-streams=2)") {
		t.Errorf("a third stream: %v, want RESOURCE_EXHAUSTED naming --audience-max-streams=2", err)
	}
	first.CloseSend()
	for {
		if _, err := first.Recv(); err != nil {
			break
		}
	}
	// The first stream's place is freed once its handler has returned,
	// just after its client saw the end.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := open()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a stream after one ended: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
