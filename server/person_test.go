package server_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/consentd/consentd/consent"
	"github.com/consentd/consentd/internal/testserver"
	pb "github.com/consentd/consentd/proto/consent/v1"
	"github.com/consentd/consentd/server"
)

// The person of these tests: an email address, a phone number and a CRM
// id, linked in a chain (email–phone, phone–crm), so reaching the last
// takes two links.
const (
	personEmail = "ada@example.com"
	personPhone = "+442079460958"
	personWork  = "crm:12345"
	// personWorkKind is personWork's kind.
	personWorkKind = pb.IdentifierKind_IDENTIFIER_KIND_EXTERNAL
)

func (c *clients) link(t *testing.T, contact string, others ...string) *pb.LinkIdentifiersResponse {
	t.Helper()
	resp, err := c.cons.LinkIdentifiers(ctx(t), &pb.LinkIdentifiersRequest{Contact: contact, Others: others, Actor: "crm-sync", RequestId: "link-" + c.keyOf(t, contact)[:16]})
	if err != nil {
		t.Fatalf("LinkIdentifiers(%s): %v", contact, err)
	}
	return resp
}

func (c *clients) events(t *testing.T, req *pb.ListEventsRequest) []*pb.Event {
	t.Helper()
	resp, err := c.cons.ListEvents(ctx(t), req)
	if err != nil {
		t.Fatalf("ListEvents: %v", err)
	}
	return resp.GetEvents()
}

func kinds(events []*pb.Event) []pb.EventKind {
	out := make([]pb.EventKind, len(events))
	for i, e := range events {
		out[i] = e.GetKind()
	}
	return out
}

// keyOf is the key consentd names an identifier by.
func (c *clients) keyOf(t *testing.T, contact string) string {
	t.Helper()
	k, err := c.env.Keys.Key(contact)
	if err != nil {
		t.Fatal(err)
	}
	return k.String()
}

// personOf links the test person, each identifier granted email_marketing.
func personOf(t *testing.T, c *clients) {
	t.Helper()
	for _, who := range []string{personEmail, personPhone, personWork} {
		c.grant(t, &pb.GrantRequest{Contact: who, Purposes: []string{"email_marketing"}, EvidenceRef: "form:" + who[:3]})
	}
	c.link(t, personEmail, personPhone)
	c.link(t, personPhone, personWork)
}

// TestPersonErase: GetContact with SCOPE_PERSON (the access request) lists
// every identifier of the person with its kind and state, and each one's
// history is readable by key through the contact; one Erase with
// SCOPE_PERSON then leaves every identifier ERASED, and a retry of it
// applies nothing twice.
func TestPersonErase(t *testing.T) {
	c := start(t)
	personOf(t, c)
	got, err := c.cons.GetContact(ctx(t), &pb.GetContactRequest{Contact: personEmail, Scope: pb.Scope_SCOPE_PERSON})
	if err != nil {
		t.Fatal(err)
	}
	type ident struct {
		Kind     pb.IdentifierKind
		Key      string
		Decision pb.Decision
	}
	var idents []ident
	for _, o := range got.GetPerson() {
		idents = append(idents, ident{o.GetIdentifier().GetKind(), o.GetIdentifier().GetKey(), o.GetPurposes()[0].GetDecision()})
	}
	want := []ident{
		{pb.IdentifierKind_IDENTIFIER_KIND_PHONE, c.keyOf(t, personPhone), allow},
		{personWorkKind, c.keyOf(t, personWork), allow},
	}
	if diff := cmp.Diff(want, idents); diff != "" {
		t.Errorf("GetContact person (-want +got):\n%s", diff)
	}
	if got, want := got.GetIdentifier().GetKey(), c.keyOf(t, personEmail); got != want {
		t.Errorf("GetContact identifier key %s, want %s", got, want)
	}
	if n := len(got.GetLinks()); n != 1 {
		t.Errorf("GetContact links: %d, want the one direct link", n)
	}
	// Without the scope: the links, not the person.
	alone, err := c.cons.GetContact(ctx(t), &pb.GetContactRequest{Contact: personEmail})
	if err != nil {
		t.Fatal(err)
	}
	if len(alone.GetPerson()) != 0 || len(alone.GetLinks()) != 1 {
		t.Errorf("GetContact without scope: person %d, links %d; want 0 and 1", len(alone.GetPerson()), len(alone.GetLinks()))
	}
	// The farthest identifier's history, read through the email.
	work := c.events(t, &pb.ListEventsRequest{Contact: personEmail, IdentifierKey: c.keyOf(t, personWork)})
	if diff := cmp.Diff([]pb.EventKind{pb.EventKind_EVENT_KIND_GRANT, pb.EventKind_EVENT_KIND_LINK}, kinds(work)); diff != "" {
		t.Errorf("work's history (-want +got):\n%s", diff)
	}
	if o := work[len(work)-1].GetOther(); o.GetKey() != c.keyOf(t, personPhone) || o.GetKind() != pb.IdentifierKind_IDENTIFIER_KIND_PHONE {
		t.Errorf("work's link names %v, want the phone", o)
	}

	req := &pb.EraseRequest{Contact: personEmail, Scope: pb.Scope_SCOPE_PERSON, Actor: "dpo", RequestId: "erase-ada"}
	resp, err := c.cons.Erase(ctx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetOthers()) != 2 {
		t.Errorf("Erase wrote on %d other identifiers, want 2", len(resp.GetOthers()))
	}
	for _, who := range []string{personEmail, personPhone, personWork} {
		if d, r := c.checkOf(t, who, "email_marketing"); d != deny || r != pb.Reason_REASON_ERASED {
			t.Errorf("Check(%s) after the person's erasure: %v %v, want DENY ERASED", who, d, r)
		}
	}
	again, err := c.cons.Erase(ctx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	if again.GetConsistencyToken() != resp.GetConsistencyToken() {
		t.Errorf("retried Erase: token %s, want the first one %s (replayed)", again.GetConsistencyToken(), resp.GetConsistencyToken())
	}
	if n := len(c.events(t, &pb.ListEventsRequest{Contact: personPhone})); n != 1 {
		t.Errorf("phone's history after the erasure and its retry: %d events, want the one erasure", n)
	}
}

// TestPersonWithdraw: a withdrawal of every purpose with SCOPE_PERSON
// reaches every identifier; without the scope, only the contact.
func TestPersonWithdraw(t *testing.T) {
	c := start(t)
	personOf(t, c)
	if _, err := c.cons.Withdraw(ctx(t), &pb.WithdrawRequest{Contact: personWork, Purposes: []string{"email_marketing"}}); err != nil {
		t.Fatal(err)
	}
	if d, _ := c.checkOf(t, personEmail, "email_marketing"); d != allow {
		t.Errorf("an identifier-scoped withdrawal reached another identifier")
	}
	if _, err := c.cons.Withdraw(ctx(t), &pb.WithdrawRequest{Contact: personWork, Scope: pb.Scope_SCOPE_PERSON}); err != nil {
		t.Fatal(err)
	}
	for _, who := range []string{personEmail, personPhone, personWork} {
		if d, r := c.checkOf(t, who, "email_marketing"); d != deny || r != pb.Reason_REASON_WITHDRAWN {
			t.Errorf("Check(%s) after the person's withdrawal: %v %v, want DENY WITHDRAWN", who, d, r)
		}
	}
}

// TestRectify: the new identifier gets the old one's grants with their
// original proofs, and its withdrawals, then RECTIFY_FROM; the old keeps
// its history, ends with RECTIFY_TO naming the new one, and is withdrawn
// from every purpose. A retry applies nothing twice.
func TestRectify(t *testing.T) {
	c := start(t)
	const old, nu = "ada@old.example", "ada@new.example"
	captured := time.Now().Add(-48 * time.Hour).UTC().Truncate(time.Second)
	c.grant(t, &pb.GrantRequest{Contact: old, Purposes: []string{"email_marketing", "sales_outreach"}, NoticeVersion: "2026-05",
		EvidenceRef: "form:signup-7", CapturedAt: ts(captured), Actor: "web"})
	if _, err := c.cons.Withdraw(ctx(t), &pb.WithdrawRequest{Contact: old, Purposes: []string{"sales_outreach"}}); err != nil {
		t.Fatal(err)
	}
	req := &pb.RectifyRequest{OldContact: old, NewContact: nu, Actor: "dpo", EvidenceRef: "ticket:88", RequestId: "move-ada"}
	resp, err := c.cons.Rectify(ctx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		contact, purpose string
		decision         pb.Decision
		reason           pb.Reason
	}{
		{nu, "email_marketing", allow, pb.Reason_REASON_GRANTED},
		{nu, "sales_outreach", deny, pb.Reason_REASON_WITHDRAWN},
		{old, "email_marketing", deny, pb.Reason_REASON_WITHDRAWN},
		{old, "market_research", deny, pb.Reason_REASON_WITHDRAWN},
	} {
		if d, r := c.checkOf(t, tc.contact, tc.purpose); d != tc.decision || r != tc.reason {
			t.Errorf("Check(%s, %s): got %v %v, want %v %v", tc.contact, tc.purpose, d, r, tc.decision, tc.reason)
		}
	}
	newEvents := c.events(t, &pb.ListEventsRequest{Contact: nu})
	want := []pb.EventKind{pb.EventKind_EVENT_KIND_GRANT, pb.EventKind_EVENT_KIND_WITHDRAW, pb.EventKind_EVENT_KIND_RECTIFY_FROM}
	if diff := cmp.Diff(want, kinds(newEvents)); diff != "" {
		t.Fatalf("new identifier's history (-want +got):\n%s", diff)
	}
	g := newEvents[0]
	if !g.GetCapturedAt().AsTime().Equal(captured) || g.GetEvidenceRef() != "form:signup-7" || g.GetNoticeVersion() != "2026-05" || g.GetActor() != "web" ||
		!slices.Equal(g.GetPurposes(), []string{"email_marketing", "sales_outreach"}) {
		t.Errorf("carried grant %v: want the original proof, both purposes", g)
	}
	if o := newEvents[2].GetOther(); o.GetKey() != c.keyOf(t, old) || o.GetKind() != pb.IdentifierKind_IDENTIFIER_KIND_EMAIL || newEvents[2].GetEvidenceRef() != "ticket:88" {
		t.Errorf("RECTIFY_FROM %v: want it to name the old identifier and the evidence", newEvents[2])
	}
	oldEvents := c.events(t, &pb.ListEventsRequest{Contact: old})
	want = []pb.EventKind{pb.EventKind_EVENT_KIND_GRANT, pb.EventKind_EVENT_KIND_WITHDRAW, pb.EventKind_EVENT_KIND_RECTIFY_TO}
	if diff := cmp.Diff(want, kinds(oldEvents)); diff != "" {
		t.Errorf("old identifier's history (-want +got):\n%s", diff)
	}
	if o := oldEvents[len(oldEvents)-1].GetOther(); o.GetKey() != c.keyOf(t, nu) {
		t.Errorf("RECTIFY_TO names %v, want the new identifier", o)
	}
	// The old history stays readable through the new identifier: linked.
	if got := c.events(t, &pb.ListEventsRequest{Contact: nu, IdentifierKey: c.keyOf(t, old)}); len(got) != 3 {
		t.Errorf("old history through the new identifier: %d events, want 3", len(got))
	}

	again, err := c.cons.Rectify(ctx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	if again.GetNewConsistencyToken() != resp.GetNewConsistencyToken() || again.GetOldConsistencyToken() != resp.GetOldConsistencyToken() {
		t.Errorf("retried Rectify: %v, want the first answer %v", again, resp)
	}
	if n := len(c.events(t, &pb.ListEventsRequest{Contact: nu})); n != 3 {
		t.Errorf("new identifier's history after a retry: %d events, want 3", n)
	}
}

// TestRectifyRefused: an erased old identifier, or an erased new one, is
// FAILED_PRECONDITION, and nothing changes.
func TestRectifyRefused(t *testing.T) {
	c := start(t)
	c.grant(t, &pb.GrantRequest{Contact: "victim@example.com", Purposes: []string{"email_marketing"}})
	if _, err := c.cons.Erase(ctx(t), &pb.EraseRequest{Contact: "gone@example.com"}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, old, new, want string
	}{
		{"erased old", "gone@example.com", "victim@example.com", "old_contact was erased"},
		{"erased new", "victim@example.com", "gone@example.com", "new_contact was erased"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := snapshotOf(t, c, "victim@example.com", "gone@example.com")
			_, err := c.cons.Rectify(ctx(t), &pb.RectifyRequest{OldContact: tc.old, NewContact: tc.new})
			if st := status.Convert(err); st.Code() != codes.FailedPrecondition || !strings.Contains(st.Message(), tc.want) {
				t.Errorf("got %v %q, want FailedPrecondition saying %q", st.Code(), st.Message(), tc.want)
			}
			if after := snapshotOf(t, c, "victim@example.com", "gone@example.com"); after != before {
				t.Errorf("the store changed:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
}

// snapshotOf describes everything the store holds about contacts.
func snapshotOf(t *testing.T, c *clients, contacts ...string) string {
	t.Helper()
	var b strings.Builder
	for _, who := range contacts {
		resp, err := c.cons.GetContact(ctx(t), &pb.GetContactRequest{Contact: who})
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s: token=%s links=%d events=%d; ", who, resp.GetConsistencyToken(), len(resp.GetLinks()),
			len(c.events(t, &pb.ListEventsRequest{Contact: who})))
	}
	return b.String()
}

// TestPersonBadInput: bad input to the RPCs of persons is
// INVALID_ARGUMENT naming the field, and changes nothing.
func TestPersonBadInput(t *testing.T) {
	c := start(t)
	const victim, other = "victim@example.com", "+442079460123"
	c.grant(t, &pb.GrantRequest{Contact: victim, Purposes: []string{"email_marketing"}})
	c.grant(t, &pb.GrantRequest{Contact: other, Purposes: []string{"email_marketing"}})
	// A full identifier: MaxLinks links already.
	const full = "full@example.com"
	var spokes []string
	for i := range consent.MaxLinks {
		spokes = append(spokes, fmt.Sprintf("spoke%d@example.com", i))
	}
	c.link(t, full, spokes...)
	many := make([]string, consent.MaxLinks+1)
	for i := range many {
		many[i] = fmt.Sprintf("many%d@example.com", i)
	}
	bad := []struct {
		name, field string
		call        func() error
	}{
		{"erase scope", "scope", func() error {
			_, err := c.cons.Erase(ctx(t), &pb.EraseRequest{Contact: victim, Scope: 7})
			return err
		}},
		{"withdraw scope", "scope", func() error {
			_, err := c.cons.Withdraw(ctx(t), &pb.WithdrawRequest{Contact: victim, Scope: 7})
			return err
		}},
		{"get scope", "scope", func() error {
			_, err := c.cons.GetContact(ctx(t), &pb.GetContactRequest{Contact: victim, Scope: -1})
			return err
		}},
		{"link to self", "others[0]", func() error {
			_, err := c.cons.LinkIdentifiers(ctx(t), &pb.LinkIdentifiersRequest{Contact: victim, Others: []string{" Victim@Example.com"}})
			return err
		}},
		{"link twice", "others[1]", func() error {
			_, err := c.cons.LinkIdentifiers(ctx(t), &pb.LinkIdentifiersRequest{Contact: victim, Others: []string{other, other}})
			return err
		}},
		{"link malformed", "others[1]", func() error {
			_, err := c.cons.LinkIdentifiers(ctx(t), &pb.LinkIdentifiersRequest{Contact: victim, Others: []string{other, "ada example.com"}})
			return err
		}},
		{"link nothing", "others", func() error {
			_, err := c.cons.LinkIdentifiers(ctx(t), &pb.LinkIdentifiersRequest{Contact: victim})
			return err
		}},
		{"link too many at once", "others", func() error {
			_, err := c.cons.LinkIdentifiers(ctx(t), &pb.LinkIdentifiersRequest{Contact: victim, Others: many})
			return err
		}},
		{"link to a full identifier", "others[0]", func() error {
			_, err := c.cons.LinkIdentifiers(ctx(t), &pb.LinkIdentifiersRequest{Contact: victim, Others: []string{full}})
			return err
		}},
		{"link a full identifier", "others", func() error {
			_, err := c.cons.LinkIdentifiers(ctx(t), &pb.LinkIdentifiersRequest{Contact: full, Others: []string{victim}})
			return err
		}},
		{"link bad actor", "actor", func() error {
			_, err := c.cons.LinkIdentifiers(ctx(t), &pb.LinkIdentifiersRequest{Contact: victim, Others: []string{other}, Actor: "a\x00b"})
			return err
		}},
		{"unlink malformed", "contact", func() error {
			_, err := c.cons.UnlinkIdentifier(ctx(t), &pb.UnlinkIdentifierRequest{Contact: "victim"})
			return err
		}},
		{"rectify to itself", "new_contact", func() error {
			_, err := c.cons.Rectify(ctx(t), &pb.RectifyRequest{OldContact: victim, NewContact: "VICTIM@example.com "})
			return err
		}},
		{"rectify malformed old", "old_contact", func() error {
			_, err := c.cons.Rectify(ctx(t), &pb.RectifyRequest{OldContact: "victim@", NewContact: other})
			return err
		}},
		{"rectify malformed new", "new_contact", func() error {
			_, err := c.cons.Rectify(ctx(t), &pb.RectifyRequest{OldContact: victim, NewContact: "+44 20"})
			return err
		}},
		{"rectify future", "captured_at", func() error {
			_, err := c.cons.Rectify(ctx(t), &pb.RectifyRequest{OldContact: victim, NewContact: other, CapturedAt: ts(time.Now().Add(time.Hour))})
			return err
		}},
		{"history of a key outside the person", "identifier_key", func() error {
			_, err := c.cons.ListEvents(ctx(t), &pb.ListEventsRequest{Contact: victim, IdentifierKey: c.keyOf(t, other)})
			return err
		}},
		{"history of a malformed key", "identifier_key", func() error {
			_, err := c.cons.ListEvents(ctx(t), &pb.ListEventsRequest{Contact: victim, IdentifierKey: "abc"})
			return err
		}},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			before := snapshotOf(t, c, victim, other, full)
			st := status.Convert(tc.call())
			if got := violatedField(st); st.Code() != codes.InvalidArgument || got != tc.field {
				t.Errorf("got %v %q (field %q), want InvalidArgument naming %q", st.Code(), st.Message(), got, tc.field)
			}
			if after := snapshotOf(t, c, victim, other, full); after != before {
				t.Errorf("the store changed:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
	t.Run("person-wide withdrawal in a batch", func(t *testing.T) {
		before := snapshotOf(t, c, victim)
		resp, err := c.cons.WriteBatch(ctx(t), &pb.WriteBatchRequest{Writes: []*pb.BatchWrite{
			{Write: &pb.BatchWrite_Withdraw{Withdraw: &pb.WithdrawRequest{Contact: victim, Scope: pb.Scope_SCOPE_PERSON}}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		if r := resp.GetResults()[0]; codes.Code(r.GetCode()) != codes.InvalidArgument || !strings.HasPrefix(r.GetMessage(), "scope: ") {
			t.Errorf("got %v %q, want InvalidArgument naming scope", codes.Code(r.GetCode()), r.GetMessage())
		}
		if after := snapshotOf(t, c, victim); after != before {
			t.Errorf("the store changed:\nbefore %s\nafter  %s", before, after)
		}
	})
}

// TestPersonBound: a link that would make a person of more than 64
// identifiers is refused naming others; the person stays as it was.
func TestPersonBound(t *testing.T) {
	c := start(t)
	// A hub with MaxLinks spokes, the first spoke with 31 more: 64.
	var spokes, more []string
	for i := range consent.MaxLinks {
		spokes = append(spokes, fmt.Sprintf("spoke%d@example.com", i))
	}
	for i := range 64 - 1 - consent.MaxLinks {
		more = append(more, fmt.Sprintf("more%d@example.com", i))
	}
	c.link(t, "hub@example.com", spokes...)
	c.link(t, spokes[0], more...)
	got, err := c.cons.GetContact(ctx(t), &pb.GetContactRequest{Contact: "hub@example.com", Scope: pb.Scope_SCOPE_PERSON})
	if err != nil {
		t.Fatal(err)
	}
	if n := 1 + len(got.GetPerson()); n != 64 {
		t.Fatalf("the person has %d identifiers, want 64", n)
	}
	_, err = c.cons.LinkIdentifiers(ctx(t), &pb.LinkIdentifiersRequest{Contact: spokes[1], Others: []string{"one-more@example.com"}})
	st := status.Convert(err)
	if st.Code() != codes.InvalidArgument || violatedField(st) != "others" || !strings.Contains(st.Message(), "65 identifiers") {
		t.Errorf("got %v %q, want InvalidArgument: others would make a person of 65 identifiers", st.Code(), st.Message())
	}
	if n := len(c.events(t, &pb.ListEventsRequest{Contact: "one-more@example.com"})); n != 0 {
		t.Errorf("the refused link wrote %d events", n)
	}
}

// failingErase is the real store, but its second erasure fails once, as
// the store being unreachable for a moment would fail it.
type failingErase struct {
	server.Store
	mu     sync.Mutex
	erases int
}

func (f *failingErase) Apply(ctx context.Context, w consent.Write) (consent.ConsistencyToken, error) {
	if w.Event.Kind == consent.EventErase {
		f.mu.Lock()
		f.erases++
		n := f.erases
		f.mu.Unlock()
		if n == 2 {
			return consent.ConsistencyToken{}, fmt.Errorf("%w: injected", consent.ErrUnavailable)
		}
	}
	return f.Store.Apply(ctx, w)
}

// TestPersonEraseResumes: a person-wide erasure that stops half way (an
// erasure drops the identifier's links) is finished by its retry: the
// farthest identifiers are erased first, so the ones left are still
// reachable from the contact.
func TestPersonEraseResumes(t *testing.T) {
	env := testserver.Start(t, testserver.Options{Store: func(s server.Store) server.Store { return &failingErase{Store: s} }})
	c := &clients{env: env, check: pb.NewCheckServiceClient(env.Conn), cons: pb.NewConsentServiceClient(env.Conn)}
	personOf(t, c)
	req := &pb.EraseRequest{Contact: personEmail, Scope: pb.Scope_SCOPE_PERSON, RequestId: "erase-ada"}
	if _, err := c.cons.Erase(ctx(t), req); status.Code(err) != codes.Unavailable {
		t.Fatalf("Erase with the store failing: %v, want Unavailable", err)
	}
	if _, err := c.cons.Erase(ctx(t), req); err != nil {
		t.Fatalf("retried Erase: %v", err)
	}
	for _, who := range []string{personEmail, personPhone, personWork} {
		if d, r := c.checkOf(t, who, "email_marketing"); d != deny || r != pb.Reason_REASON_ERASED {
			t.Errorf("Check(%s) after the retried erasure: %v %v, want DENY ERASED", who, d, r)
		}
	}
}

// TestUnlink: an identifier unlinked leaves its person on both sides, with
// an UNLINK event on each, and a person-wide erasure no longer reaches it.
func TestUnlink(t *testing.T) {
	c := start(t)
	personOf(t, c)
	resp, err := c.cons.UnlinkIdentifier(ctx(t), &pb.UnlinkIdentifierRequest{Contact: personPhone, RequestId: "unlink-phone"})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(resp.GetOthers()); n != 2 {
		t.Errorf("UnlinkIdentifier wrote on %d other identifiers, want 2", n)
	}
	for _, tc := range []struct {
		contact string
		want    []pb.EventKind
	}{
		{personEmail, []pb.EventKind{pb.EventKind_EVENT_KIND_GRANT, pb.EventKind_EVENT_KIND_LINK, pb.EventKind_EVENT_KIND_UNLINK}},
		{personPhone, []pb.EventKind{pb.EventKind_EVENT_KIND_GRANT, pb.EventKind_EVENT_KIND_LINK, pb.EventKind_EVENT_KIND_LINK,
			pb.EventKind_EVENT_KIND_UNLINK, pb.EventKind_EVENT_KIND_UNLINK}},
		{personWork, []pb.EventKind{pb.EventKind_EVENT_KIND_GRANT, pb.EventKind_EVENT_KIND_LINK, pb.EventKind_EVENT_KIND_UNLINK}},
	} {
		if diff := cmp.Diff(tc.want, kinds(c.events(t, &pb.ListEventsRequest{Contact: tc.contact}))); diff != "" {
			t.Errorf("%s's history (-want +got):\n%s", tc.contact, diff)
		}
		got, err := c.cons.GetContact(ctx(t), &pb.GetContactRequest{Contact: tc.contact, Scope: pb.Scope_SCOPE_PERSON})
		if err != nil {
			t.Fatal(err)
		}
		if len(got.GetLinks()) != 0 || len(got.GetPerson()) != 0 {
			t.Errorf("%s after the unlink: links %v, person %v; want none", tc.contact, got.GetLinks(), got.GetPerson())
		}
	}
	if _, err := c.cons.Erase(ctx(t), &pb.EraseRequest{Contact: personEmail, Scope: pb.Scope_SCOPE_PERSON}); err != nil {
		t.Fatal(err)
	}
	if d, _ := c.checkOf(t, personPhone, "email_marketing"); d != allow {
		t.Errorf("the person-wide erasure of the email reached the unlinked phone")
	}
}

// beforeBatch is the real store, running hook once before the first batch
// it applies: a request made at that moment, between a Rectify's read of
// the old identifier and its writes.
type beforeBatch struct {
	server.Store
	once sync.Once
	hook func()
}

func (b *beforeBatch) ApplyBatch(ctx context.Context, ws []consent.Write) ([]consent.ConsistencyToken, []error, error) {
	b.once.Do(func() {
		if b.hook != nil {
			b.hook()
		}
	})
	return b.Store.ApplyBatch(ctx, ws)
}

// TestRectifyKeepsConcurrentWithdrawal: a withdrawal (or an erasure) of
// the old identifier that lands after Rectify read it, before the old
// identifier is marked moved, reaches the new identifier too: the consent
// it withdrew was carried there, and a withdrawal is never lost. (Without
// the re-read of the old identifier's history, the new one answered
// ALLOW.)
func TestRectifyKeepsConcurrentWithdrawal(t *testing.T) {
	for _, tc := range []struct {
		name    string
		write   func(c *clients, contact string) error
		oldWant pb.Reason
	}{
		{"withdraw", func(c *clients, contact string) error {
			_, err := c.cons.Withdraw(ctx(t), &pb.WithdrawRequest{Contact: contact, Purposes: []string{"email_marketing"}})
			return err
		}, pb.Reason_REASON_WITHDRAWN},
		{"erase", func(c *clients, contact string) error {
			_, err := c.cons.Erase(ctx(t), &pb.EraseRequest{Contact: contact})
			return err
		}, pb.Reason_REASON_ERASED},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bb := &beforeBatch{}
			env := testserver.Start(t, testserver.Options{Store: func(s server.Store) server.Store { bb.Store = s; return bb }})
			c := &clients{env: env, check: pb.NewCheckServiceClient(env.Conn), cons: pb.NewConsentServiceClient(env.Conn)}
			const old, nu = "ada@old.example", "ada@new.example"
			c.grant(t, &pb.GrantRequest{Contact: old, Purposes: []string{"email_marketing"}, CapturedAt: ts(time.Now().Add(-time.Hour))})
			bb.hook = func() {
				if err := tc.write(c, old); err != nil {
					t.Errorf("the concurrent %s: %v", tc.name, err)
				}
			}
			req := &pb.RectifyRequest{OldContact: old, NewContact: nu, RequestId: "move-ada"}
			if _, err := c.cons.Rectify(ctx(t), req); err != nil {
				t.Fatal(err)
			}
			for _, w := range []struct {
				who    string
				reason pb.Reason
			}{{old, tc.oldWant}, {nu, pb.Reason_REASON_WITHDRAWN}} {
				if d, r := c.checkOf(t, w.who, "email_marketing"); d != deny || r != w.reason {
					t.Errorf("Check(%s): got %v %v, want DENY %v", w.who, d, r, w.reason)
				}
			}
			// A retry is a replay: it writes nothing more.
			n := len(c.events(t, &pb.ListEventsRequest{Contact: nu}))
			if _, err := c.cons.Rectify(ctx(t), req); err != nil {
				t.Fatal(err)
			}
			if got := len(c.events(t, &pb.ListEventsRequest{Contact: nu})); got != n {
				t.Errorf("retried Rectify: the new identifier has %d events, want %d", got, n)
			}
		})
	}
}

// TestRectifyFullLinks: a Rectify whose new (or old) identifier already
// has consent.MaxLinks links is INVALID_ARGUMENT naming that field, and
// changes nothing: no consent is carried to the new identifier without
// the old one being marked moved. (Without the check up front, the
// carried grant landed and the old identifier kept answering ALLOW.)
func TestRectifyFullLinks(t *testing.T) {
	c := start(t)
	var spokes []string
	for i := range consent.MaxLinks {
		spokes = append(spokes, fmt.Sprintf("spoke%d@example.com", i))
	}
	const full, other = "full@example.com", "other@example.com"
	c.link(t, full, spokes...)
	c.grant(t, &pb.GrantRequest{Contact: other, Purposes: []string{"email_marketing"}})
	c.grant(t, &pb.GrantRequest{Contact: full, Purposes: []string{"email_marketing"}})
	for _, tc := range []struct{ old, new, field string }{
		{other, full, "new_contact"},
		{full, other, "old_contact"},
	} {
		t.Run(tc.field, func(t *testing.T) {
			before := snapshotOf(t, c, full, other)
			_, err := c.cons.Rectify(ctx(t), &pb.RectifyRequest{OldContact: tc.old, NewContact: tc.new})
			if st := status.Convert(err); st.Code() != codes.InvalidArgument || violatedField(st) != tc.field {
				t.Errorf("got %v %q (field %q), want InvalidArgument naming %s", st.Code(), st.Message(), violatedField(st), tc.field)
			}
			if after := snapshotOf(t, c, full, other); after != before {
				t.Errorf("the store changed:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
}

// TestIdentifierKindsMatch: the wire's identifier kinds are consent's,
// value for value (identifierPB and consentctl convert by value), and
// every kind is named as consent.IDKind.String names it.
func TestIdentifierKindsMatch(t *testing.T) {
	if got, want := len(pb.IdentifierKind_name), int(consent.IDExternal)+1; got != want {
		t.Errorf("the wire has %d identifier kinds, consent %d", got, want)
	}
	for k := consent.IDUnknown; k <= consent.IDExternal; k++ {
		want := "IDENTIFIER_KIND_" + strings.ToUpper(k.String())
		if k == consent.IDUnknown {
			want = "IDENTIFIER_KIND_UNSPECIFIED"
		}
		if got := pb.IdentifierKind(k).String(); got != want {
			t.Errorf("consent kind %d (%s) is %s on the wire, want %s", k, k, got, want)
		}
	}
}

// TestRectifyBackdated: a Rectify dated (captured_at) before a grant of the
// old identifier still blocks the old identifier: the suppression counts
// from when the rectification was recorded, not from the date the request
// claims. (With the suppression from captured_at, the later grant kept
// the old identifier answering ALLOW.)
func TestRectifyBackdated(t *testing.T) {
	c := start(t)
	const old, nu = "ada@old.example", "ada@new.example"
	c.grant(t, &pb.GrantRequest{Contact: old, Purposes: []string{"email_marketing"}, CapturedAt: ts(time.Now().Add(-time.Hour))})
	if _, err := c.cons.Rectify(ctx(t), &pb.RectifyRequest{OldContact: old, NewContact: nu, CapturedAt: ts(time.Now().Add(-48 * time.Hour))}); err != nil {
		t.Fatal(err)
	}
	if d, r := c.checkOf(t, old, "email_marketing"); d != deny || r != pb.Reason_REASON_WITHDRAWN {
		t.Errorf("Check(old): got %v %v, want DENY WITHDRAWN", d, r)
	}
	if d, r := c.checkOf(t, nu, "email_marketing"); d != allow {
		t.Errorf("Check(new): got %v %v, want ALLOW (the carried grant)", d, r)
	}
}
