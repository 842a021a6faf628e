package daemontest

import (
	"errors"
	"io"
	"sync/atomic"
	"testing"

	pb "github.com/consentd/consentd/proto/consent/v1"
)

// SendAudience sends contacts rounds times on stream (the purpose
// email_marketing in the first message), then closes its sending side. It
// sends from a goroutine, so that the caller can read meanwhile, and counts
// each message sent in sent when not nil. The goroutine ends when sending
// ends; the channel, buffered, gets its one error or nil.
func SendAudience(stream pb.CheckService_FilterAudienceClient, contacts []string, rounds int, sent *atomic.Int64) <-chan error {
	done := make(chan error, 1)
	go func() {
		req := &pb.FilterAudienceRequest{Purpose: "email_marketing", Contacts: contacts}
		for range rounds {
			if err := stream.Send(req); err != nil {
				done <- err
				return
			}
			if sent != nil {
				sent.Add(1)
			}
			req = &pb.FilterAudienceRequest{Contacts: contacts}
		}
		done <- stream.CloseSend()
	}()
	return done
}

// RecvAudience reads stream to its end, failing the test unless every
// allowed contact is the next of contacts, round after round, and returns
// how many came and the summary. meanwhile, when not nil, runs once the
// first answer has come.
func RecvAudience(t testing.TB, stream pb.CheckService_FilterAudienceClient, contacts []string, meanwhile func()) (int, *pb.FilterAudienceSummary) {
	t.Helper()
	var got int
	var sum *pb.FilterAudienceSummary
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return got, sum
		}
		if err != nil {
			t.Fatalf("FilterAudience: %v", err)
		}
		if meanwhile != nil {
			meanwhile()
			meanwhile = nil
		}
		for _, c := range resp.GetAllowed() {
			if want := contacts[got%len(contacts)]; c != want {
				t.Fatalf("FilterAudience: allowed #%d is %q, want %q", got, c, want)
			}
			got++
		}
		if s := resp.GetSummary(); s != nil {
			sum = s
		}
	}
}
