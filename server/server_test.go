package server_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/consentd/consentd/consent"
	"github.com/consentd/consentd/internal/testserver"
	pb "github.com/consentd/consentd/proto/consent/v1"
)

type clients struct {
	env   *testserver.Env
	check pb.CheckServiceClient
	cons  pb.ConsentServiceClient
}

func start(t *testing.T) *clients {
	t.Helper()
	env := testserver.Start(t, testserver.Options{})
	return &clients{env: env, check: pb.NewCheckServiceClient(env.Conn), cons: pb.NewConsentServiceClient(env.Conn)}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func ts(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }

func (c *clients) grant(t *testing.T, req *pb.GrantRequest) string {
	t.Helper()
	if req.Method == pb.Method_METHOD_UNSPECIFIED {
		req.Method = pb.Method_METHOD_CHECKBOX
	}
	resp, err := c.cons.Grant(ctx(t), req)
	if err != nil {
		t.Fatalf("Grant: %v", err)
	}
	return resp.GetConsistencyToken()
}

func (c *clients) checkOf(t *testing.T, contact, purpose string) (pb.Decision, pb.Reason) {
	t.Helper()
	resp, err := c.check.Check(ctx(t), &pb.CheckRequest{Contact: contact, Purpose: purpose})
	if err != nil {
		t.Fatalf("Check(%s): %v", purpose, err)
	}
	return resp.GetDecision(), resp.GetReason()
}

const (
	allow = pb.Decision_DECISION_ALLOW
	deny  = pb.Decision_DECISION_DENY
)

// TestReadmeSession is the README's grpcurl session through the Go client.
func TestReadmeSession(t *testing.T) {
	c := start(t)
	const ada = "Ada@Example.com"
	c.grant(t, &pb.GrantRequest{Contact: ada, Purposes: []string{"email_marketing"}, Method: pb.Method_METHOD_CHECKBOX,
		NoticeVersion: "2026-05", EvidenceRef: "form:signup-7", Actor: "web-signup", RequestId: "req-1"})
	steps := []struct {
		name string
		do   func()
		want [2]any
	}{
		{"after grant", func() {}, [2]any{allow, pb.Reason_REASON_GRANTED}},
		{"after withdraw", func() {
			if _, err := c.cons.Withdraw(ctx(t), &pb.WithdrawRequest{Contact: "ada@example.com", Purposes: []string{"email_marketing"}}); err != nil {
				t.Fatal(err)
			}
		}, [2]any{deny, pb.Reason_REASON_WITHDRAWN}},
		{"after erase", func() {
			if _, err := c.cons.Erase(ctx(t), &pb.EraseRequest{Contact: "ada@example.com", Actor: "dpo"}); err != nil {
				t.Fatal(err)
			}
		}, [2]any{deny, pb.Reason_REASON_ERASED}},
	}
	for _, s := range steps {
		s.do()
		d, r := c.checkOf(t, " ada@EXAMPLE.com", "email_marketing")
		if got := [2]any{d, r}; got != s.want {
			t.Errorf("%s: Check = %v, want %v", s.name, got, s.want)
		}
	}
}

func TestEveryReason(t *testing.T) {
	c := start(t)
	now := time.Now()
	tests := []struct {
		name    string
		grant   *pb.GrantRequest // nil: no grant
		after   func(contact string)
		purpose string
		want    pb.Reason
	}{
		{"granted", &pb.GrantRequest{Purposes: []string{"email_marketing"}}, nil, "email_marketing", pb.Reason_REASON_GRANTED},
		{"unknown contact", nil, nil, "email_marketing", pb.Reason_REASON_NO_CONSENT},
		{"other purpose only", &pb.GrantRequest{Purposes: []string{"sales_outreach"}}, nil, "email_marketing", pb.Reason_REASON_NO_CONSENT},
		{"withdrawn", &pb.GrantRequest{Purposes: []string{"email_marketing"}}, func(contact string) {
			if _, err := c.cons.Withdraw(ctx(t), &pb.WithdrawRequest{Contact: contact}); err != nil {
				t.Fatal(err)
			}
		}, "email_marketing", pb.Reason_REASON_WITHDRAWN},
		{"expired", &pb.GrantRequest{Purposes: []string{"email_marketing"}, CapturedAt: ts(now.AddDate(0, 0, -10)), ExpiresAt: ts(now.AddDate(0, 0, -1))}, nil, "email_marketing", pb.Reason_REASON_EXPIRED},
		{"stale email (25 months)", &pb.GrantRequest{Purposes: []string{"email_marketing"}, CapturedAt: ts(now.AddDate(0, -25, 0))}, nil, "email_marketing", pb.Reason_REASON_STALE},
		{"fresh email (23 months)", &pb.GrantRequest{Purposes: []string{"email_marketing"}, CapturedAt: ts(now.AddDate(0, -23, 0))}, nil, "email_marketing", pb.Reason_REASON_GRANTED},
		{"stale ads (14 months)", &pb.GrantRequest{Purposes: []string{"ad_retargeting"}, CapturedAt: ts(now.AddDate(0, -14, 0))}, nil, "ad_retargeting", pb.Reason_REASON_STALE},
		{"third party", &pb.GrantRequest{Purposes: []string{"email_marketing"}, Source: pb.Source_SOURCE_THIRD_PARTY, ThirdParty: "ListCo"}, nil, "email_marketing", pb.Reason_REASON_THIRD_PARTY_UNCONFIRMED},
		{"third party implied by name", &pb.GrantRequest{Purposes: []string{"email_marketing"}, ThirdParty: "ListCo"}, nil, "email_marketing", pb.Reason_REASON_THIRD_PARTY_UNCONFIRMED},
		{"bundled", &pb.GrantRequest{Purposes: []string{"email_marketing", "sales_outreach"}, Bundled: true}, nil, "sales_outreach", pb.Reason_REASON_NOT_SPECIFIC},
		{"erased", &pb.GrantRequest{Purposes: []string{"email_marketing"}}, func(contact string) {
			if _, err := c.cons.Erase(ctx(t), &pb.EraseRequest{Contact: contact}); err != nil {
				t.Fatal(err)
			}
		}, "email_marketing", pb.Reason_REASON_ERASED},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			contact := fmt.Sprintf("person%d@example.com", i)
			if tt.grant != nil {
				tt.grant.Contact = contact
				c.grant(t, tt.grant)
			}
			if tt.after != nil {
				tt.after(contact)
			}
			d, r := c.checkOf(t, contact, tt.purpose)
			wantD := deny
			if tt.want == pb.Reason_REASON_GRANTED {
				wantD = allow
			}
			if d != wantD || r != tt.want {
				t.Errorf("Check = %v/%v, want %v/%v", d, r, wantD, tt.want)
			}
		})
	}
}

func TestEraseThenRegrant(t *testing.T) {
	c := start(t)
	const who = "erased@example.com"
	c.grant(t, &pb.GrantRequest{Contact: who, Purposes: []string{"email_marketing"}})
	if _, err := c.cons.Erase(ctx(t), &pb.EraseRequest{Contact: who}); err != nil {
		t.Fatal(err)
	}
	// A bought list must never bring an erased person back.
	_, err := c.cons.Grant(ctx(t), &pb.GrantRequest{Contact: who, Purposes: []string{"email_marketing"},
		Method: pb.Method_METHOD_CHECKBOX, Source: pb.Source_SOURCE_THIRD_PARTY, ThirdParty: "ListCo"})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("third-party grant after erasure: %v, want FAILED_PRECONDITION", err)
	}
	// Nor an old form dated before the erasure.
	_, err = c.cons.Grant(ctx(t), &pb.GrantRequest{Contact: who, Purposes: []string{"email_marketing"},
		Method: pb.Method_METHOD_PAPER_FORM, CapturedAt: ts(time.Now().Add(-time.Hour))})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("back-dated grant after erasure: %v, want FAILED_PRECONDITION", err)
	}
	if d, r := c.checkOf(t, who, "email_marketing"); d != deny || r != pb.Reason_REASON_ERASED {
		t.Fatalf("after refused grants: %v/%v", d, r)
	}
	// The person can come back on their own.
	c.grant(t, &pb.GrantRequest{Contact: who, Purposes: []string{"email_marketing"}, Method: pb.Method_METHOD_DOUBLE_OPT_IN})
	if d, r := c.checkOf(t, who, "email_marketing"); d != allow || r != pb.Reason_REASON_GRANTED {
		t.Fatalf("fresh first-party grant after erasure: %v/%v, want ALLOW", d, r)
	}
}

func TestIdempotentWrites(t *testing.T) {
	c := start(t)
	req := &pb.GrantRequest{Contact: "retry@example.com", Purposes: []string{"email_marketing"}, Method: pb.Method_METHOD_BUTTON, RequestId: "r-42"}
	first := c.grant(t, req)
	again := c.grant(t, req)
	if first != again {
		t.Errorf("retry token = %q, want the first one %q", again, first)
	}
	// The same request from a retry with a differently spelled contact is
	// still the same request for the same contact.
	req.Contact = "RETRY@example.com "
	if got := c.grant(t, req); got != first {
		t.Errorf("retry with another spelling = %q, want %q", got, first)
	}
	events, err := c.cons.ListEvents(ctx(t), &pb.ListEventsRequest{Contact: "retry@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(events.GetEvents()); n != 1 {
		t.Errorf("history has %d events after retries, want 1", n)
	}
}

func TestAtLeastAsFresh(t *testing.T) {
	c := start(t)
	const who = "fresh@example.com"
	c.grant(t, &pb.GrantRequest{Contact: who, Purposes: []string{"email_marketing"}})
	c.checkOf(t, who, "email_marketing") // warm the cache
	w, err := c.cons.Withdraw(ctx(t), &pb.WithdrawRequest{Contact: who})
	if err != nil {
		t.Fatal(err)
	}
	for _, cons := range []*pb.Consistency{
		{Requirement: &pb.Consistency_AtLeastAsFresh{AtLeastAsFresh: w.GetConsistencyToken()}},
		{Requirement: &pb.Consistency_FullyConsistent{FullyConsistent: true}},
		{Requirement: &pb.Consistency_MinimizeLatency{MinimizeLatency: true}},
		nil,
	} {
		resp, err := c.check.Check(ctx(t), &pb.CheckRequest{Contact: who, Purpose: "email_marketing", Consistency: cons})
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetDecision() != deny || resp.GetConsistencyToken() != w.GetConsistencyToken() {
			t.Errorf("consistency %v: %v token %q, want DENY at %q", cons, resp.GetDecision(), resp.GetConsistencyToken(), w.GetConsistencyToken())
		}
	}
}

func TestBatchCheck(t *testing.T) {
	c := start(t)
	c.grant(t, &pb.GrantRequest{Contact: "b1@example.com", Purposes: []string{"sales_outreach"}})
	c.grant(t, &pb.GrantRequest{Contact: "b3@example.com", Purposes: []string{"sales_outreach"}, Bundled: true, Method: pb.Method_METHOD_VERBAL})
	resp, err := c.check.BatchCheck(ctx(t), &pb.BatchCheckRequest{Purpose: "sales_outreach",
		Contacts: []string{"b1@example.com", "b2@example.com", "b3@example.com", "B1@EXAMPLE.COM"}})
	if err != nil {
		t.Fatal(err)
	}
	want := &pb.BatchCheckResponse{Results: []*pb.BatchCheckResult{
		{Decision: allow, Reason: pb.Reason_REASON_GRANTED},
		{Decision: deny, Reason: pb.Reason_REASON_NO_CONSENT},
		{Decision: deny, Reason: pb.Reason_REASON_NOT_SPECIFIC},
		{Decision: allow, Reason: pb.Reason_REASON_GRANTED},
	}}
	if diff := cmp.Diff(want, resp, protocmp.Transform()); diff != "" {
		t.Errorf("BatchCheck (-want +got):\n%s", diff)
	}
}

func TestFilterAudience(t *testing.T) {
	c := start(t)
	const n, chunk = 25000, 5000
	contact := func(i int) string { return fmt.Sprintf("aud%05d@example.com", i) }
	var wantAllowed []string
	for i := 0; i < n; i += 97 {
		c.grant(t, &pb.GrantRequest{Contact: contact(i), Purposes: []string{"ad_retargeting"}})
		if i%3 == 0 {
			if _, err := c.cons.Withdraw(ctx(t), &pb.WithdrawRequest{Contact: contact(i), Purposes: []string{"ad_retargeting"}}); err != nil {
				t.Fatal(err)
			}
			continue
		}
		wantAllowed = append(wantAllowed, contact(i))
	}
	stream, err := c.check.FilterAudience(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	var sum *pb.FilterAudienceSummary
	received := make(chan error, 1)
	go func() {
		for {
			resp, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				received <- nil
				return
			}
			if err != nil {
				received <- err
				return
			}
			got = append(got, resp.GetAllowed()...)
			if resp.GetSummary() != nil {
				sum = resp.GetSummary()
			}
		}
	}()
	for start := 0; start < n; start += chunk {
		req := &pb.FilterAudienceRequest{}
		if start == 0 {
			req.Purpose = "ad_retargeting"
		}
		for i := start; i < start+chunk; i++ {
			req.Contacts = append(req.Contacts, contact(i))
		}
		if start == 0 {
			req.Contacts = append(req.Contacts, "", "bad\x00contact") // counted, never fatal
		}
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if err := <-received; err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(wantAllowed, got); diff != "" {
		t.Errorf("allowed contacts (-want +got):\n%s", diff)
	}
	granted := uint64((n + 96) / 97)
	withdrawn := granted - uint64(len(wantAllowed))
	wantSum := &pb.FilterAudienceSummary{Total: n + 2, Allowed: uint64(len(wantAllowed)), Invalid: 2, Reasons: []*pb.ReasonCount{
		{Reason: pb.Reason_REASON_GRANTED, Count: uint64(len(wantAllowed))},
		{Reason: pb.Reason_REASON_NO_CONSENT, Count: n - granted},
		{Reason: pb.Reason_REASON_WITHDRAWN, Count: withdrawn},
	}}
	if diff := cmp.Diff(wantSum, sum, protocmp.Transform()); diff != "" {
		t.Errorf("summary (-want +got):\n%s", diff)
	}
}

func TestGetContact(t *testing.T) {
	c := start(t)
	captured := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	c.grant(t, &pb.GrantRequest{Contact: "sar@example.com", Purposes: []string{"email_marketing", "market_research"},
		Method: pb.Method_METHOD_PAPER_FORM, EvidenceRef: "scan:991", NoticeVersion: "v3", CapturedAt: ts(captured), Actor: "crm-import"})
	withdrawn := time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)
	w, err := c.cons.Withdraw(ctx(t), &pb.WithdrawRequest{Contact: "sar@example.com", Purposes: []string{"market_research"}, CapturedAt: ts(withdrawn)})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.cons.GetContact(ctx(t), &pb.GetContactRequest{Contact: "sar@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	proof := &pb.Proof{Method: pb.Method_METHOD_PAPER_FORM, Source: pb.Source_SOURCE_FIRST_PARTY, EvidenceRef: "scan:991",
		NoticeVersion: "v3", CapturedAt: ts(captured), Actor: "crm-import"}
	// The record is as fresh as the newest write: its token is that write's.
	key, _ := c.env.Keys.Key("sar@example.com")
	want := &pb.GetContactResponse{ConsistencyToken: w.GetConsistencyToken(),
		Identifier: &pb.Identifier{Key: key.String(), Kind: pb.IdentifierKind_IDENTIFIER_KIND_EMAIL}, Purposes: []*pb.PurposeState{
			{Purpose: "email_marketing", Decision: allow, Reason: pb.Reason_REASON_GRANTED, Grant: proof},
			{Purpose: "sales_outreach", Decision: deny, Reason: pb.Reason_REASON_NO_CONSENT},
			{Purpose: "market_research", Decision: deny, Reason: pb.Reason_REASON_WITHDRAWN, Grant: proof, WithdrawnAt: ts(withdrawn)},
			{Purpose: "ad_retargeting", Decision: deny, Reason: pb.Reason_REASON_NO_CONSENT},
		}}
	if diff := cmp.Diff(want, resp, protocmp.Transform(), protocmp.IgnoreFields(&pb.Proof{}, "recorded_at")); diff != "" {
		t.Errorf("GetContact (-want +got):\n%s", diff)
	}
}

func TestListEventsPaging(t *testing.T) {
	c := start(t)
	for i := range 5 {
		c.grant(t, &pb.GrantRequest{Contact: "hist@example.com", Purposes: []string{"email_marketing"}, EvidenceRef: fmt.Sprint("form:", i)})
	}
	c.grant(t, &pb.GrantRequest{Contact: "other@example.com", Purposes: []string{"email_marketing"}})
	var got []string
	token := ""
	for pages := 0; ; pages++ {
		resp, err := c.cons.ListEvents(ctx(t), &pb.ListEventsRequest{Contact: "hist@example.com", PageSize: 2, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range resp.GetEvents() {
			got = append(got, e.GetEvidenceRef())
		}
		if token = resp.GetNextPageToken(); token == "" {
			if pages != 2 {
				t.Errorf("read %d pages, want 3", pages+1)
			}
			break
		}
	}
	if diff := cmp.Diff([]string{"form:0", "form:1", "form:2", "form:3", "form:4"}, got); diff != "" {
		t.Errorf("history (-want +got):\n%s", diff)
	}
}

func TestListPurposes(t *testing.T) {
	c := start(t)
	resp, err := c.cons.ListPurposes(ctx(t), &pb.ListPurposesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range resp.GetPurposes() {
		got = append(got, fmt.Sprintf("%s/%d", p.GetName(), p.GetReconfirmMonths()))
	}
	want := []string{"email_marketing/24", "sales_outreach/24", "market_research/24", "ad_retargeting/13"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("purposes (-want +got):\n%s", diff)
	}
}

// TestBadInput sends every kind of malformed request and checks that each
// gets INVALID_ARGUMENT naming the field, and that none changes the store.
func TestBadInput(t *testing.T) {
	c := start(t)
	long := strings.Repeat("x", 321)
	now := time.Now()
	ok := &pb.GrantRequest{Contact: "victim@example.com", Purposes: []string{"email_marketing"}, Method: pb.Method_METHOD_CHECKBOX, RequestId: "used"}
	c.grant(t, ok)
	grant := func(f func(r *pb.GrantRequest)) func() error {
		return func() error {
			r := &pb.GrantRequest{Contact: "victim@example.com", Purposes: []string{"email_marketing"}, Method: pb.Method_METHOD_CHECKBOX}
			f(r)
			_, err := c.cons.Grant(ctx(t), r)
			return err
		}
	}
	check := func(r *pb.CheckRequest) func() error {
		return func() error { _, err := c.check.Check(ctx(t), r); return err }
	}
	mint := func(r *pb.MintUnsubscribeRequest) func() error {
		return func() error { _, err := c.cons.MintUnsubscribe(ctx(t), r); return err }
	}
	// Tokens consentd never issued: one made up in the format of version 1
	// (before tokens carried a tag) and one in today's format.
	const madeUp = "AQIC"
	forged := consent.ConsistencyToken{Partition: 0, Seq: 1, Tag: 0x0123456789abcdef}.String()
	fresh := func(tok string) *pb.Consistency {
		return &pb.Consistency{Requirement: &pb.Consistency_AtLeastAsFresh{AtLeastAsFresh: tok}}
	}
	many := make([]string, consent.MaxBatch+1)
	for i := range many {
		many[i] = fmt.Sprint(i, "@example.com")
	}
	filter := func(reqs ...*pb.FilterAudienceRequest) func() error {
		return func() error {
			s, err := c.check.FilterAudience(ctx(t))
			if err != nil {
				return err
			}
			for _, r := range reqs {
				if err := s.Send(r); err != nil {
					break // the server closed the stream; Recv has the status
				}
			}
			s.CloseSend()
			for {
				if _, err := s.Recv(); err != nil {
					return err
				}
			}
		}
	}
	tests := []struct {
		name  string
		call  func() error
		field string
	}{
		{"check: empty contact", check(&pb.CheckRequest{Purpose: "email_marketing"}), "contact"},
		{"check: blank contact", check(&pb.CheckRequest{Contact: "  ", Purpose: "email_marketing"}), "contact"},
		{"check: oversized contact", check(&pb.CheckRequest{Contact: long, Purpose: "email_marketing"}), "contact"},
		{"check: control character", check(&pb.CheckRequest{Contact: "a\x01b@example.com", Purpose: "email_marketing"}), "contact"},
		{"check: unknown purpose", check(&pb.CheckRequest{Contact: "a@example.com", Purpose: "email"}), "purpose"},
		{"check: no purpose", check(&pb.CheckRequest{Contact: "a@example.com"}), "purpose"},
		{"check: malformed token", check(&pb.CheckRequest{Contact: "a@example.com", Purpose: "email_marketing",
			Consistency: &pb.Consistency{Requirement: &pb.Consistency_AtLeastAsFresh{AtLeastAsFresh: "not-a-token"}}}), "consistency.at_least_as_fresh"},
		{"check: made-up token", check(&pb.CheckRequest{Contact: "victim@example.com", Purpose: "email_marketing", Consistency: fresh(madeUp)}), "consistency.at_least_as_fresh"},
		{"check: forged token", check(&pb.CheckRequest{Contact: "victim@example.com", Purpose: "email_marketing", Consistency: fresh(forged)}), "consistency.at_least_as_fresh"},
		{"batch: forged token", func() error {
			_, err := c.check.BatchCheck(ctx(t), &pb.BatchCheckRequest{Purpose: "email_marketing", Contacts: []string{"victim@example.com"}, Consistency: fresh(forged)})
			return err
		}, "consistency.at_least_as_fresh"},
		{"filter: forged token", filter(&pb.FilterAudienceRequest{Purpose: "email_marketing", Contacts: []string{"victim@example.com"}, Consistency: fresh(forged)}), "consistency.at_least_as_fresh"},
		{"batch: over the limit", func() error {
			_, err := c.check.BatchCheck(ctx(t), &pb.BatchCheckRequest{Purpose: "email_marketing", Contacts: many})
			return err
		}, "contacts"},
		{"batch: bad contact", func() error {
			_, err := c.check.BatchCheck(ctx(t), &pb.BatchCheckRequest{Purpose: "email_marketing", Contacts: []string{"a@x.co", "b@x.co", "c@x.co", "\xff"}})
			return err
		}, "contacts[3]"},
		{"batch: unknown purpose", func() error {
			_, err := c.check.BatchCheck(ctx(t), &pb.BatchCheckRequest{Purpose: "nope", Contacts: []string{"a@x.co"}})
			return err
		}, "purpose"},
		{"filter: unknown purpose", filter(&pb.FilterAudienceRequest{Purpose: "nope", Contacts: []string{"a@x.co"}}), "purpose"},
		{"filter: no purpose", filter(&pb.FilterAudienceRequest{Contacts: []string{"a@x.co"}}), "purpose"},
		{"filter: purpose changed", filter(&pb.FilterAudienceRequest{Purpose: "email_marketing", Contacts: []string{"a@x.co"}},
			&pb.FilterAudienceRequest{Purpose: "ad_retargeting", Contacts: []string{"b@x.co"}}), "purpose"},
		{"filter: message over the limit", filter(&pb.FilterAudienceRequest{Purpose: "email_marketing", Contacts: many}), "contacts"},
		{"grant: empty contact", grant(func(r *pb.GrantRequest) { r.Contact = "" }), "contact"},
		{"grant: invalid UTF-8", grant(func(r *pb.GrantRequest) { r.Contact = "victim\xc3@example.com" }), "contact"},
		{"grant: no purposes", grant(func(r *pb.GrantRequest) { r.Purposes = nil }), "purposes"},
		{"grant: unknown purpose", grant(func(r *pb.GrantRequest) { r.Purposes = []string{"email_marketing", "spam"} }), "purposes[1]"},
		{"grant: purpose twice", grant(func(r *pb.GrantRequest) { r.Purposes = []string{"email_marketing", "email_marketing"} }), "purposes[1]"},
		{"grant: no method", grant(func(r *pb.GrantRequest) { r.Method = pb.Method_METHOD_UNSPECIFIED }), "method"},
		{"grant: unknown method", grant(func(r *pb.GrantRequest) { r.Method = 99 }), "method"},
		{"grant: a withdrawal method", grant(func(r *pb.GrantRequest) { r.Method = pb.Method_METHOD_ONE_CLICK_UNSUBSCRIBE }), "method"},
		{"grant: unknown source", grant(func(r *pb.GrantRequest) { r.Source = 9 }), "source"},
		{"grant: third party without a name", grant(func(r *pb.GrantRequest) { r.Source = pb.Source_SOURCE_THIRD_PARTY }), "third_party"},
		{"grant: first party with a third-party name", grant(func(r *pb.GrantRequest) {
			r.Source, r.ThirdParty = pb.Source_SOURCE_FIRST_PARTY, "ListCo"
		}), "third_party"},
		{"grant: captured in the future", grant(func(r *pb.GrantRequest) { r.CapturedAt = ts(now.Add(10 * time.Minute)) }), "captured_at"},
		{"grant: captured in 1970", grant(func(r *pb.GrantRequest) { r.CapturedAt = ts(time.Unix(0, 0)) }), "captured_at"},
		{"grant: invalid timestamp", grant(func(r *pb.GrantRequest) { r.CapturedAt = &timestamppb.Timestamp{Seconds: 1e12, Nanos: -1} }), "captured_at"},
		{"grant: expires before captured", grant(func(r *pb.GrantRequest) { r.ExpiresAt = ts(now.Add(-time.Hour)) }), "expires_at"},
		{"grant: expires after 2200", grant(func(r *pb.GrantRequest) { r.ExpiresAt = ts(time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC)) }), "expires_at"},
		{"grant: oversized actor", grant(func(r *pb.GrantRequest) { r.Actor = strings.Repeat("a", 257) }), "actor"},
		{"grant: control character in evidence", grant(func(r *pb.GrantRequest) { r.EvidenceRef = "scan\n1" }), "evidence_ref"},
		{"grant: request id reused", grant(func(r *pb.GrantRequest) { r.RequestId = "used"; r.NoticeVersion = "other" }), "request_id"},
		{"withdraw: bad contact", func() error {
			_, err := c.cons.Withdraw(ctx(t), &pb.WithdrawRequest{Contact: long})
			return err
		}, "contact"},
		{"withdraw: unknown purpose", func() error {
			_, err := c.cons.Withdraw(ctx(t), &pb.WithdrawRequest{Contact: "victim@example.com", Purposes: []string{"x"}})
			return err
		}, "purposes[0]"},
		{"withdraw: captured in the future", func() error {
			_, err := c.cons.Withdraw(ctx(t), &pb.WithdrawRequest{Contact: "victim@example.com", CapturedAt: ts(now.Add(time.Hour))})
			return err
		}, "captured_at"},
		{"withdraw: unknown method", func() error {
			_, err := c.cons.Withdraw(ctx(t), &pb.WithdrawRequest{Contact: "victim@example.com", Method: 42})
			return err
		}, "method"},
		{"erase: bad contact", func() error { _, err := c.cons.Erase(ctx(t), &pb.EraseRequest{Contact: ""}); return err }, "contact"},
		{"erase: oversized request id", func() error {
			_, err := c.cons.Erase(ctx(t), &pb.EraseRequest{Contact: "victim@example.com", RequestId: strings.Repeat("r", 300)})
			return err
		}, "request_id"},
		{"mint unsubscribe: empty contact", mint(&pb.MintUnsubscribeRequest{Purpose: "email_marketing"}), "contact"},
		{"mint unsubscribe: oversized contact", mint(&pb.MintUnsubscribeRequest{Contact: long, Purpose: "email_marketing"}), "contact"},
		{"mint unsubscribe: control character", mint(&pb.MintUnsubscribeRequest{Contact: "victim\n@example.com", Purpose: "email_marketing"}), "contact"},
		{"mint unsubscribe: no purpose", mint(&pb.MintUnsubscribeRequest{Contact: "victim@example.com"}), "purpose"},
		{"mint unsubscribe: unknown purpose", mint(&pb.MintUnsubscribeRequest{Contact: "victim@example.com", Purpose: "newsletter"}), "purpose"},
		{"get contact: bad contact", func() error { _, err := c.cons.GetContact(ctx(t), &pb.GetContactRequest{}); return err }, "contact"},
		{"list events: bad contact", func() error { _, err := c.cons.ListEvents(ctx(t), &pb.ListEventsRequest{Contact: "\x00"}); return err }, "contact"},
		{"list events: negative page size", func() error {
			_, err := c.cons.ListEvents(ctx(t), &pb.ListEventsRequest{Contact: "victim@example.com", PageSize: -1})
			return err
		}, "page_size"},
		{"list events: page too large", func() error {
			_, err := c.cons.ListEvents(ctx(t), &pb.ListEventsRequest{Contact: "victim@example.com", PageSize: 1001})
			return err
		}, "page_size"},
		{"list events: bad page token", func() error {
			_, err := c.cons.ListEvents(ctx(t), &pb.ListEventsRequest{Contact: "victim@example.com", PageToken: "zz"})
			return err
		}, "page_token"},
		{"list events: made-up page token", func() error {
			_, err := c.cons.ListEvents(ctx(t), &pb.ListEventsRequest{Contact: "victim@example.com", PageToken: madeUp})
			return err
		}, "page_token"},
		{"list events: forged page token", func() error {
			_, err := c.cons.ListEvents(ctx(t), &pb.ListEventsRequest{Contact: "victim@example.com", PageToken: forged})
			return err
		}, "page_token"},
	}
	before := snapshot(t, c)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			st := status.Convert(err)
			if st.Code() != codes.InvalidArgument {
				t.Fatalf("code = %v (%v), want InvalidArgument", st.Code(), err)
			}
			if !strings.HasPrefix(st.Message(), tt.field+": ") {
				t.Errorf("message %q does not start with the field %q", st.Message(), tt.field)
			}
			if got := violatedField(st); got != tt.field {
				t.Errorf("BadRequest field = %q, want %q", got, tt.field)
			}
			if after := snapshot(t, c); after != before {
				t.Errorf("store changed:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
}

// snapshot describes everything the store holds about the test contact, and
// the newest write's token.
func snapshot(t *testing.T, c *clients) string {
	t.Helper()
	resp, err := c.cons.GetContact(ctx(t), &pb.GetContactRequest{Contact: "victim@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := c.cons.ListEvents(ctx(t), &pb.ListEventsRequest{Contact: "victim@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("token=%s events=%d", resp.GetConsistencyToken(), len(ev.GetEvents()))
}

func violatedField(st *status.Status) string {
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok && len(br.GetFieldViolations()) == 1 {
			return br.GetFieldViolations()[0].GetField()
		}
	}
	return ""
}

// TestNoRawContactsAtRest writes and reads through every RPC, then looks for
// the raw contacts in the server's logs and in the store's file.
func TestNoRawContactsAtRest(t *testing.T) {
	c := start(t)
	contacts := []string{"Secret.Person@Example.com", "+447911123456", "zoë@example.jp"}
	for i, who := range contacts {
		c.grant(t, &pb.GrantRequest{Contact: who, Purposes: []string{"email_marketing"}, RequestId: fmt.Sprint("id-", i)})
		c.checkOf(t, who, "email_marketing")
		c.check.Check(ctx(t), &pb.CheckRequest{Contact: who, Purpose: "unknown_purpose"}) // logged as a failure
		c.cons.Withdraw(ctx(t), &pb.WithdrawRequest{Contact: who})
		c.cons.GetContact(ctx(t), &pb.GetContactRequest{Contact: who})
		c.cons.ListEvents(ctx(t), &pb.ListEventsRequest{Contact: who})
	}
	if _, err := c.cons.Erase(ctx(t), &pb.EraseRequest{Contact: contacts[0]}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(c.env.Logs.String(), "CheckService/Check") {
		t.Fatal("the server logged nothing; the scan would prove nothing")
	}
	db, err := os.ReadFile(filepath.Join(c.env.Dir, "consent.db"))
	if err != nil {
		t.Fatal(err)
	}
	for _, who := range contacts {
		for _, form := range []string{who, strings.ToLower(who), strings.Split(strings.ToLower(who), "@")[0]} {
			if strings.Contains(c.env.Logs.String(), form) {
				t.Errorf("logs contain %q", form)
			}
			if strings.Contains(string(db), form) {
				t.Errorf("store file contains %q", form)
			}
		}
	}
}

func TestUnimplementedAndHealthyAfterErrors(t *testing.T) {
	c := start(t)
	err := c.env.Conn.Invoke(ctx(t), "/consent.v1.CheckService/Nope", &pb.CheckRequest{}, &pb.CheckResponse{})
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("unknown method: %v", err)
	}
	if d, _ := c.checkOf(t, "a@example.com", "email_marketing"); d != deny {
		t.Errorf("server not answering after errors")
	}
}
