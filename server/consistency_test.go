package server_test

import (
	"path/filepath"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/consentd/consentd/consent"
	"github.com/consentd/consentd/internal/consistencytoken"
	"github.com/consentd/consentd/internal/contactkey"
	pb "github.com/consentd/consentd/proto/consent/v1"
)

// TestConsistencyTokensNotIssuedAreRefused: a consistency token this store
// did not issue, in at_least_as_fresh or as a page token, is refused with
// INVALID_ARGUMENT naming the field, whatever is wrong with it; the tokens
// it issued keep working.
func TestConsistencyTokensNotIssuedAreRefused(t *testing.T) {
	c := start(t)
	const who = "fresh@example.com"
	for range 3 {
		c.grant(t, &pb.GrantRequest{Contact: who, Purposes: []string{"email_marketing"}})
	}
	issuedText := c.grant(t, &pb.GrantRequest{Contact: who, Purposes: []string{"email_marketing"}})
	issued, err := consent.ParseConsistencyToken(issuedText)
	if err != nil {
		t.Fatal(err)
	}

	// What an issued token is good for: reading one's write, and paging.
	fresh := func(tok string) *pb.Consistency {
		return &pb.Consistency{Requirement: &pb.Consistency_AtLeastAsFresh{AtLeastAsFresh: tok}}
	}
	resp, err := c.check.Check(ctx(t), &pb.CheckRequest{Contact: who, Purpose: "email_marketing", Consistency: fresh(issuedText)})
	if err != nil || resp.GetConsistencyToken() != issuedText {
		t.Fatalf("Check at least as fresh as an issued token: %v, %v; want the write's token %q", resp, err, issuedText)
	}
	events, page := 0, ""
	for pages := 0; ; pages++ {
		r, err := c.cons.ListEvents(ctx(t), &pb.ListEventsRequest{Contact: who, PageSize: 1, PageToken: page})
		if err != nil {
			t.Fatalf("ListEvents page %d: %v", pages, err)
		}
		events += len(r.GetEvents())
		if page = r.GetNextPageToken(); page == "" {
			break
		}
		if pages > 10 {
			t.Fatalf("ListEvents still has a next page after %d pages of one event, of 4 events", pages+1)
		}
	}
	if events != 4 {
		t.Errorf("paging one event at a time listed %d events, want 4", events)
	}

	secret, err := contactkey.LoadOrCreateSecret(filepath.Join(c.env.Dir, "secret"))
	if err != nil {
		t.Fatal(err)
	}
	issue := func(secret []byte, store string) string {
		iss, err := consistencytoken.NewIssuer(secret, store)
		if err != nil {
			t.Fatal(err)
		}
		return iss.Issue(consent.ConsistencyToken{Partition: issued.Partition, Seq: issued.Seq}).String()
	}
	if got := issue(secret, c.env.Store.StoreID()); got != issuedText {
		t.Fatalf("the test's issuer makes %q, the server %q: the cases below would prove nothing", got, issuedText)
	}
	flipped := func(f func(*consent.ConsistencyToken)) string {
		tok := issued
		f(&tok)
		return tok.String()
	}
	tests := []struct{ name, tok string }{
		{"made up, version 1", "AQAB"},
		{"made up", consent.ConsistencyToken{Seq: 1, Tag: 0x0123456789abcdef}.String()},
		{"untagged", consent.ConsistencyToken{Partition: issued.Partition, Seq: issued.Seq}.String()},
		{"a tag bit flipped", flipped(func(t *consent.ConsistencyToken) { t.Tag ^= 1 << 17 })},
		{"a sequence bit flipped", flipped(func(t *consent.ConsistencyToken) { t.Seq ^= 2 })},
		{"a partition bit flipped", flipped(func(t *consent.ConsistencyToken) { t.Partition ^= 1 })},
		{"another secret", issue([]byte("another deployment's secret, 0123456789"), c.env.Store.StoreID())},
		{"another store with this secret", issue(secret, "another store")},
		{"another consentd", start(t).grant(t, &pb.GrantRequest{Contact: who, Purposes: []string{"email_marketing"}})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.check.Check(ctx(t), &pb.CheckRequest{Contact: who, Purpose: "email_marketing", Consistency: fresh(tt.tok)})
			wantRefused(t, err, "consistency.at_least_as_fresh: not a consistency token this consentd store issued")
			_, err = c.cons.ListEvents(ctx(t), &pb.ListEventsRequest{Contact: who, PageToken: tt.tok})
			wantRefused(t, err, "page_token: not a consistency token this consentd store issued")
		})
	}
}

func wantRefused(t *testing.T, err error, msg string) {
	t.Helper()
	if st := status.Convert(err); st.Code() != codes.InvalidArgument || st.Message() != msg {
		t.Errorf("got %v %q, want InvalidArgument %q", st.Code(), st.Message(), msg)
	}
}
