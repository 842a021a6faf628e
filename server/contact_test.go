package server_test

import (
	"errors"
	"io"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/consentd/consentd/internal/identifier"
	pb "github.com/consentd/consentd/proto/consent/v1"
)

// TestOneContactRule: every RPC that takes a contact holds it to the one
// rule, internal/identifier's (an email address, a phone number, or an
// external namespace:id, what consentctl import takes): a contact that
// breaks it is INVALID_ARGUMENT naming the field and the rule it breaks,
// or, in an audience, an invalid contact; and nothing changes.
func TestOneContactRule(t *testing.T) {
	c := start(t)
	c.grant(t, &pb.GrantRequest{Contact: "victim@example.com", Purposes: []string{"email_marketing"}, Method: pb.Method_METHOD_CHECKBOX})
	for _, tc := range []struct{ bad, rule string }{
		{"ada example.com", "not an email address or phone number"},
		{"+44 20 7946 000", identifier.ErrPhoneInvalid.Error()},
		{"020 7946 0958", identifier.ErrPhoneRegion.Error()}, // this server has no --default-region
		{"jo@localhost", identifier.ErrDomainDot.Error()},
		{"Victim <victim@example.com>", identifier.ErrDisplayName.Error()},
		// Zero-width and bidi characters: the same address to the eye.
		{"victim\u200b@example.com", identifier.ErrInvisible.Error()},
		{"victim@example.com\u200d", identifier.ErrInvisible.Error()},
		{"\u202evictim@example.com", identifier.ErrInvisible.Error()},
		{"\u2066victim@example.com\u2069", identifier.ErrInvisible.Error()},
		{"victim@\u200eexample.com", identifier.ErrInvisible.Error()},
	} {
		bad, rule := tc.bad, tc.rule
		calls := []struct {
			name, field string
			call        func() error
		}{
			{"Grant", "contact", func() error {
				_, err := c.cons.Grant(ctx(t), &pb.GrantRequest{Contact: bad, Purposes: []string{"email_marketing"}, Method: pb.Method_METHOD_CHECKBOX})
				return err
			}},
			{"Withdraw", "contact", func() error {
				_, err := c.cons.Withdraw(ctx(t), &pb.WithdrawRequest{Contact: bad})
				return err
			}},
			{"Erase", "contact", func() error { _, err := c.cons.Erase(ctx(t), &pb.EraseRequest{Contact: bad}); return err }},
			{"Check", "contact", func() error {
				_, err := c.check.Check(ctx(t), &pb.CheckRequest{Contact: bad, Purpose: "email_marketing"})
				return err
			}},
			{"BatchCheck", "contacts[1]", func() error {
				_, err := c.check.BatchCheck(ctx(t), &pb.BatchCheckRequest{Purpose: "email_marketing", Contacts: []string{"victim@example.com", bad}})
				return err
			}},
			{"MintUnsubscribe", "contact", func() error {
				_, err := c.cons.MintUnsubscribe(ctx(t), &pb.MintUnsubscribeRequest{Contact: bad, Purpose: "email_marketing"})
				return err
			}},
			{"GetContact", "contact", func() error { _, err := c.cons.GetContact(ctx(t), &pb.GetContactRequest{Contact: bad}); return err }},
			{"ListEvents", "contact", func() error { _, err := c.cons.ListEvents(ctx(t), &pb.ListEventsRequest{Contact: bad}); return err }},
			{"LinkIdentifiers", "contact", func() error {
				_, err := c.cons.LinkIdentifiers(ctx(t), &pb.LinkIdentifiersRequest{Contact: bad, Others: []string{"victim@example.com"}})
				return err
			}},
			{"LinkIdentifiers others", "others[0]", func() error {
				_, err := c.cons.LinkIdentifiers(ctx(t), &pb.LinkIdentifiersRequest{Contact: "victim@example.com", Others: []string{bad}})
				return err
			}},
			{"UnlinkIdentifier", "contact", func() error {
				_, err := c.cons.UnlinkIdentifier(ctx(t), &pb.UnlinkIdentifierRequest{Contact: bad})
				return err
			}},
			{"Rectify old", "old_contact", func() error {
				_, err := c.cons.Rectify(ctx(t), &pb.RectifyRequest{OldContact: bad, NewContact: "victim@example.com"})
				return err
			}},
			{"Rectify new", "new_contact", func() error {
				_, err := c.cons.Rectify(ctx(t), &pb.RectifyRequest{OldContact: "victim@example.com", NewContact: bad})
				return err
			}},
			{"Erase person", "contact", func() error {
				_, err := c.cons.Erase(ctx(t), &pb.EraseRequest{Contact: bad, Scope: pb.Scope_SCOPE_PERSON})
				return err
			}},
		}
		before := snapshot(t, c)
		for _, tt := range calls {
			t.Run(tt.name+" "+bad, func(t *testing.T) {
				st := status.Convert(tt.call())
				if st.Code() != codes.InvalidArgument || st.Message() != tt.field+": "+rule {
					t.Errorf("%v %q, want InvalidArgument %q", st.Code(), st.Message(), tt.field+": "+rule)
				}
				if got := violatedField(st); got != tt.field {
					t.Errorf("BadRequest field = %q, want %q", got, tt.field)
				}
			})
		}
		t.Run("WriteBatch "+bad, func(t *testing.T) {
			resp, err := c.cons.WriteBatch(ctx(t), &pb.WriteBatchRequest{Writes: []*pb.BatchWrite{
				{Write: &pb.BatchWrite_Grant{Grant: &pb.GrantRequest{Contact: bad, Purposes: []string{"email_marketing"}, Method: pb.Method_METHOD_CHECKBOX}}},
				{Write: &pb.BatchWrite_Withdraw{Withdraw: &pb.WithdrawRequest{Contact: bad}}},
			}})
			if err != nil {
				t.Fatal(err)
			}
			for i, r := range resp.GetResults() {
				if codes.Code(r.GetCode()) != codes.InvalidArgument || r.GetMessage() != "contact: "+rule {
					t.Errorf("write %d: %v %q, want InvalidArgument %q", i, codes.Code(r.GetCode()), r.GetMessage(), "contact: "+rule)
				}
			}
		})
		t.Run("FilterAudience "+bad, func(t *testing.T) {
			s, err := c.check.FilterAudience(ctx(t))
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Send(&pb.FilterAudienceRequest{Purpose: "email_marketing", Contacts: []string{"victim@example.com", bad}}); err != nil {
				t.Fatal(err)
			}
			s.CloseSend()
			var allowed []string
			var sum *pb.FilterAudienceSummary
			for {
				resp, err := s.Recv()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				allowed = append(allowed, resp.GetAllowed()...)
				if resp.GetSummary() != nil {
					sum = resp.GetSummary()
				}
			}
			if len(allowed) != 1 || allowed[0] != "victim@example.com" || sum.GetTotal() != 2 || sum.GetInvalid() != 1 {
				t.Errorf("allowed %q, summary %v: want the valid contact allowed and one invalid", allowed, sum)
			}
		})
		if after := snapshot(t, c); after != before {
			t.Errorf("%q: the store changed:\nbefore %s\nafter  %s", bad, before, after)
		}
	}
}
