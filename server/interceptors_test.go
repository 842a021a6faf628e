package server_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/consentd/consentd/internal/daemontest"
	pb "github.com/consentd/consentd/proto/consent/v1"
)

// logLines returns the lines of the server's log that hold all of parts.
func (c *clients) logLines(parts ...string) []string {
	var out []string
	for line := range strings.Lines(c.env.Logs.String()) {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			out = append(out, line)
		}
	}
	return out
}

// TestRefusalLoggedByField: a refused call is logged with the field its
// refusal names and that value's length, never the value, though the
// refusal itself names it to its caller.
func TestRefusalLoggedByField(t *testing.T) {
	c := start(t)
	const leak = "Leaky.Person+purpose@Example.com"
	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"unknown purpose", func() error {
			_, err := c.check.Check(ctx(t), &pb.CheckRequest{Contact: "a@example.com", Purpose: leak})
			return err
		}},
		{"a purpose in a list", func() error {
			_, err := c.cons.Grant(ctx(t), &pb.GrantRequest{Contact: "a@example.com", Purposes: []string{"email_marketing", leak}, Method: pb.Method_METHOD_CHECKBOX})
			return err
		}},
		// Another method: a second refusal of Grant's would be suppressed.
		{"a label too long", func() error {
			_, err := c.cons.Withdraw(ctx(t), &pb.WithdrawRequest{Contact: "a@example.com", Actor: strings.Repeat(leak, 100)})
			return err
		}},
	} {
		err := tc.call()
		if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "Leaky") && tc.name != "a label too long" {
			t.Errorf("%s: %v, want InvalidArgument naming the value to its caller", tc.name, err)
		}
	}
	for _, want := range []string{
		`method=/consent.v1.CheckService/Check code=InvalidArgument elapsed=`, ` field=purpose bytes=32`,
		`method=/consent.v1.ConsentService/Grant code=InvalidArgument elapsed=`, ` field=purposes[1] bytes=32`,
		`method=/consent.v1.ConsentService/Withdraw code=InvalidArgument elapsed=`, ` field=actor bytes=3200`,
	} {
		if len(c.logLines(want)) == 0 {
			t.Errorf("log lacks %q:\n%s", want, c.env.Logs)
		}
	}
	if strings.Contains(strings.ToLower(c.env.Logs.String()), "leaky") {
		t.Errorf("the log holds a refused value:\n%s", c.env.Logs)
	}
}

// TestFailureLogThrottled: a flood of refusals is one line a while per
// caller, method and code, not one a call.
func TestFailureLogThrottled(t *testing.T) {
	c := start(t)
	for range 1000 {
		if _, err := c.check.Check(ctx(t), &pb.CheckRequest{Contact: "a@example.com", Purpose: "nope"}); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("refusal: %v", err)
		}
	}
	if _, err := c.check.Check(ctx(t), &pb.CheckRequest{Contact: "a@example.com"}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("refusal: %v", err)
	}
	if _, err := c.cons.GetContact(ctx(t), &pb.GetContactRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("refusal: %v", err)
	}
	if n := len(c.logLines("code=InvalidArgument")); n != 2 {
		t.Errorf("%d lines for 1,002 refusals of two methods, want 2:\n%s", n, c.env.Logs)
	}
}

// TestCancelledCallLoggedAtDebug: a caller that cancels its own call
// (grpcurl and ghz cancel their reflection stream when done) has not seen
// a failure of consentd's: the call is logged at debug level.
func TestCancelledCallLoggedAtDebug(t *testing.T) {
	c := start(t)
	cctx, cancel := context.WithCancel(ctx(t))
	stream, err := c.check.FilterAudience(cctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&pb.FilterAudienceRequest{Purpose: "email_marketing", Contacts: []string{"a@example.com"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	cancel()
	deadline := time.Now().Add(10 * time.Second)
	for len(c.logLines("FilterAudience", "code=Canceled")) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the cancelled stream was not logged:\n%s", c.env.Logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, line := range c.logLines("FilterAudience", "code=Canceled") {
		if !strings.Contains(line, "level=DEBUG") {
			t.Errorf("cancelled call logged as %s, want level=DEBUG", line)
		}
	}
}

// TestUndecodableBody: a request body that is not protobuf is bad input,
// INVALID_ARGUMENT naming the message type and nothing of the body, for a
// unary call and for a stream, logged as such; the server serves on.
func TestUndecodableBody(t *testing.T) {
	c := start(t)
	const leak = "Leaky.Body@Example.com"
	// Field 1, length-delimited, longer than the body.
	body := append(protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.BytesType), uint64(len(leak)+10)), leak...)
	for _, tc := range []struct {
		method string
		stream bool
		want   string
	}{
		{"/consent.v1.CheckService/Check", false, "request body is not a valid consent.v1.CheckRequest in protobuf wire format"},
		{"/consent.v1.ConsentService/WriteBatch", false, "request body is not a valid consent.v1.WriteBatchRequest in protobuf wire format"},
		{"/consent.v1.CheckService/FilterAudience", true, "request body is not a valid consent.v1.FilterAudienceRequest in protobuf wire format"},
		{"/grpc.health.v1.Health/Check", false, "request body is not a valid grpc.health.v1.HealthCheckRequest in protobuf wire format"},
	} {
		var err error
		if tc.stream {
			var s grpc.ClientStream
			if s, err = c.env.Conn.NewStream(ctx(t), &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, tc.method, grpc.ForceCodecV2(daemontest.RawCodec{})); err == nil {
				s.SendMsg(daemontest.RawBody(body))
				s.CloseSend()
				for err == nil {
					err = s.RecvMsg(&pb.FilterAudienceResponse{})
				}
			}
		} else {
			err = c.env.Conn.Invoke(ctx(t), tc.method, daemontest.RawBody(body), &pb.CheckResponse{}, grpc.ForceCodecV2(daemontest.RawCodec{}))
		}
		if st := status.Convert(err); st.Code() != codes.InvalidArgument || st.Message() != tc.want {
			t.Errorf("%s: %v %q, want InvalidArgument %q", tc.method, st.Code(), st.Message(), tc.want)
		}
		if len(c.logLines(tc.method, "code=InvalidArgument")) == 0 {
			t.Errorf("%s: the refusal was not logged:\n%s", tc.method, c.env.Logs)
		}
	}
	if strings.Contains(strings.ToLower(c.env.Logs.String()), "leaky") {
		t.Errorf("the log holds the body:\n%s", c.env.Logs)
	}
	if d, _ := c.checkOf(t, "a@example.com", "email_marketing"); d != deny {
		t.Errorf("server not answering after bad bodies")
	}
}

// TestOneThrottlePerServer: a caller's refusals of one method and code are
// throttled together whether the codec refused the body or the handler the
// request: one line a while, not one per interceptor chain.
func TestOneThrottlePerServer(t *testing.T) {
	c := start(t)
	const method = "/consent.v1.CheckService/Check"
	body := protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.BytesType), 10) // longer than the body
	err := c.env.Conn.Invoke(ctx(t), method, daemontest.RawBody(body), &pb.CheckResponse{}, grpc.ForceCodecV2(daemontest.RawCodec{}))
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("undecodable body: %v, want InvalidArgument", err)
	}
	_, err = c.check.Check(ctx(t), &pb.CheckRequest{Purpose: "email_marketing"}) // no contact
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("Check without a contact: %v, want InvalidArgument", err)
	}
	if got := c.logLines(method, "code=InvalidArgument"); len(got) != 1 {
		t.Errorf("%d lines for two refusals of %s within the throttle's interval, want 1:\n%s", len(got), method, got)
	}
}
