package server_test

import (
	"errors"
	"fmt"
	"io"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/consentd/consentd/proto/consent/v1"
)

// With the store gone, a batch with a malformed contact is still refused as
// bad input, naming the contact, not as a store failure: contacts are keyed
// and checked before anything is read.
func TestBatchCheckBadInputBeforeStore(t *testing.T) {
	c := start(t)
	c.env.Store.Close()
	contacts := make([]string, 600) // more than one part on two cores
	for i := range contacts {
		contacts[i] = fmt.Sprintf("c%d@example.com", i)
	}
	contacts[517] = "bad\x00contact"
	_, err := c.check.BatchCheck(ctx(t), &pb.BatchCheckRequest{Purpose: "email_marketing", Contacts: contacts})
	if got := status.Code(err); got != codes.InvalidArgument || !containsField(err, "contacts[517]") {
		t.Errorf("BatchCheck with the store closed and contacts[517] malformed = %v, want INVALID_ARGUMENT naming contacts[517]", err)
	}
}

// A store that fails mid-stream ends FilterAudience with the error after
// the answers already sent, and leaves no goroutine behind (goleak checks at
// the end of the package's tests).
func TestFilterAudienceStoreFailsMidStream(t *testing.T) {
	c := start(t)
	stream, err := c.check.FilterAudience(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	send := func(first bool) error {
		// New contacts each time: none is cached, so each message reads the store.
		n++
		req := &pb.FilterAudienceRequest{Contacts: []string{fmt.Sprintf("a%d@example.com", n), fmt.Sprintf("b%d@example.com", n)}}
		if first {
			req.Purpose = "email_marketing"
		}
		return stream.Send(req)
	}
	if err := send(true); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatalf("first answer: %v", err)
	}
	c.env.Store.Close()
	for range 3 {
		if err := send(false); err != nil {
			break // the server ended the stream; Recv has the status
		}
	}
	stream.CloseSend()
	for {
		_, err = stream.Recv()
		if err != nil {
			break
		}
	}
	if code := status.Code(err); errors.Is(err, io.EOF) || code == codes.OK || code == codes.DeadlineExceeded {
		t.Fatalf("stream ended with %v after the store closed, want the store's error", err)
	}
}

func containsField(err error, field string) bool {
	st, _ := status.FromError(err)
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				if v.GetField() == field {
					return true
				}
			}
		}
	}
	return false
}
