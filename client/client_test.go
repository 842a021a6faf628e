package client_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/consentd/consentd/client"
	"github.com/consentd/consentd/consent"
	"github.com/consentd/consentd/internal/testserver"
	pb "github.com/consentd/consentd/proto/consent/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newClient(t *testing.T) *client.Client {
	t.Helper()
	env := testserver.Start(t, testserver.Options{})
	c, err := client.New("passthrough:///bufnet", client.WithDialOptions(grpc.WithContextDialer(env.Dial)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestClientRoundTrip(t *testing.T) {
	c := newClient(t)
	if err := c.Health(ctx(t)); err != nil {
		t.Fatalf("Health: %v", err)
	}
	const who = "client@example.com"
	if ok, d, err := c.MaySend(ctx(t), who, "email_marketing"); ok || err != nil || d.Reason != consent.ReasonNoConsent {
		t.Fatalf("MaySend before grant = %v, %+v, %v", ok, d, err)
	}
	if _, err := c.Grant(ctx(t), &pb.GrantRequest{Contact: who, Purposes: []string{"email_marketing"}, Method: pb.Method_METHOD_DOUBLE_OPT_IN}); err != nil {
		t.Fatal(err)
	}
	if ok, _, err := c.MaySend(ctx(t), who, "email_marketing"); !ok || err != nil {
		t.Fatalf("MaySend after grant = %v, %v", ok, err)
	}
	tok, err := c.Withdraw(ctx(t), &pb.WithdrawRequest{Contact: who})
	if err != nil {
		t.Fatal(err)
	}
	d, err := c.Check(ctx(t), who, "email_marketing", client.AtLeastAsFresh(tok))
	if err != nil || d.Allowed || d.Reason != consent.ReasonWithdrawn {
		t.Fatalf("Check after withdraw = %+v, %v", d, err)
	}
	if _, err := c.Erase(ctx(t), &pb.EraseRequest{Contact: who}); err != nil {
		t.Fatal(err)
	}
	if d, err := c.Check(ctx(t), who, "email_marketing", client.FullyConsistent()); err != nil || d.Reason != consent.ReasonErased {
		t.Fatalf("Check after erase = %+v, %v", d, err)
	}
}

func TestClientErrorsAreSentinels(t *testing.T) {
	c := newClient(t)
	tests := []struct {
		name string
		call func() error
		want error
	}{
		{"invalid", func() error { _, err := c.Check(ctx(t), "", "email_marketing"); return err }, consent.ErrInvalid},
		{"suppressed", func() error {
			c.Erase(ctx(t), &pb.EraseRequest{Contact: "gone@example.com"})
			_, err := c.Grant(ctx(t), &pb.GrantRequest{Contact: "gone@example.com", Purposes: []string{"email_marketing"},
				Method: pb.Method_METHOD_CHECKBOX, ThirdParty: "ListCo"})
			return err
		}, consent.ErrSuppressed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want errors.Is %v", err, tt.want)
			}
		})
	}
}

// TestMaySendFailsClosed: with nothing listening, MaySend says no and the
// error says why.
func TestMaySendFailsClosed(t *testing.T) {
	c, err := client.New("127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	short, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ok, _, err := c.MaySend(short, "a@example.com", "email_marketing")
	if ok || err == nil {
		t.Fatalf("MaySend with no server = %v, %v; want false and an error", ok, err)
	}
	if !errors.Is(err, consent.ErrUnavailable) && !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want unavailable or deadline", err)
	}
	if err := c.Health(short); err == nil {
		t.Error("Health with no server = nil, want an error")
	}
}

func TestBatchCheckAndFilter(t *testing.T) {
	c := newClient(t)
	const n = 5000
	name := func(i int) string { return fmt.Sprintf("aud%d@example.com", i) }
	var want []string
	for i := 0; i < n; i += 250 {
		if _, err := c.Grant(ctx(t), &pb.GrantRequest{Contact: name(i), Purposes: []string{"ad_retargeting"}, Method: pb.Method_METHOD_CHECKBOX}); err != nil {
			t.Fatal(err)
		}
		want = append(want, name(i))
	}
	ds, err := c.BatchCheck(ctx(t), "ad_retargeting", []string{name(0), name(1)})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]consent.Decision{{Allowed: true, Reason: consent.ReasonGranted}, {Reason: consent.ReasonNoConsent}}, ds); diff != "" {
		t.Errorf("BatchCheck (-want +got):\n%s", diff)
	}
	audience := func(yield func(string) bool) {
		for i := range n {
			if !yield(name(i)) {
				return
			}
		}
		yield("") // malformed: counted, never allowed
	}
	var got []string
	sum, err := c.Filter(ctx(t), "ad_retargeting", audience, func(contact string) error {
		got = append(got, contact)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Filter allowed (-want +got):\n%s", diff)
	}
	wantSum := client.FilterSummary{Total: n + 1, Allowed: uint64(len(want)), Invalid: 1,
		Reasons: map[consent.Reason]uint64{consent.ReasonGranted: uint64(len(want)), consent.ReasonNoConsent: uint64(n - len(want))}}
	if diff := cmp.Diff(wantSum, sum); diff != "" {
		t.Errorf("Filter summary (-want +got):\n%s", diff)
	}
	// The caller can stop early; the stream is torn down cleanly.
	stop := errors.New("enough")
	if _, err := c.Filter(ctx(t), "ad_retargeting", audience, func(string) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("Filter stopped by the caller: %v, want %v", err, stop)
	}
	if _, err := c.Filter(ctx(t), "nope", audience, func(string) error { return nil }); !errors.Is(err, consent.ErrInvalid) {
		t.Errorf("Filter with an unknown purpose: %v, want ErrInvalid", err)
	}
}

// newClientWith starts a stack whose unary calls pass through fault, and a
// client with opts.
func newClientWith(t *testing.T, fault grpc.UnaryServerInterceptor, opts ...client.Option) (*client.Client, *testserver.Env) {
	t.Helper()
	env := testserver.Start(t, testserver.Options{Fault: fault})
	c, err := client.New("passthrough:///bufnet", append(opts, client.WithDialOptions(grpc.WithContextDialer(env.Dial)))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, env
}

// loseFirstAnswers returns a server interceptor that lets the server act
// on the first call of each method and then loses its answer
// (UNAVAILABLE), as a connection reset after the write would, so the
// client's retry must be a replay; and attempts, how many calls of a
// method (its full name) the server saw.
func loseFirstAnswers() (lose grpc.UnaryServerInterceptor, attempts func(method string) int) {
	var mu sync.Mutex
	seen := map[string]int{}
	attempts = func(m string) int {
		mu.Lock()
		defer mu.Unlock()
		return seen[m]
	}
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		resp, err := h(ctx, req)
		mu.Lock()
		defer mu.Unlock()
		if seen[info.FullMethod]++; seen[info.FullMethod] == 1 {
			return nil, status.Error(codes.Unavailable, "connection reset (injected)")
		}
		return resp, err
	}, attempts
}

// TestRetriesApplyWritesOnce loses the answer to the first attempt of each
// call after the server has acted on it: the client retries, and a write is
// still recorded once (the request id it added makes the retry a replay).
func TestRetriesApplyWritesOnce(t *testing.T) {
	lose, attempts := loseFirstAnswers()
	c, _ := newClientWith(t, lose)
	const who = "retry@example.com"
	if _, err := c.Grant(ctx(t), &pb.GrantRequest{Contact: who, Purposes: []string{"email_marketing"}, Method: pb.Method_METHOD_CHECKBOX}); err != nil {
		t.Fatalf("Grant: %v", err)
	}
	if _, err := c.Withdraw(ctx(t), &pb.WithdrawRequest{Contact: who}); err != nil {
		t.Fatalf("Withdraw: %v", err)
	}
	d, err := c.Check(ctx(t), who, "email_marketing")
	if err != nil || d.Reason != consent.ReasonWithdrawn {
		t.Fatalf("Check = %+v, %v; want WITHDRAWN", d, err)
	}
	var kinds []pb.EventKind
	for e, err := range c.ListEvents(ctx(t), who) {
		if err != nil {
			t.Fatalf("ListEvents: %v", err)
		}
		kinds = append(kinds, e.GetKind())
	}
	if diff := cmp.Diff([]pb.EventKind{pb.EventKind_EVENT_KIND_GRANT, pb.EventKind_EVENT_KIND_WITHDRAW}, kinds); diff != "" {
		t.Errorf("history after retried writes (-want +got):\n%s", diff)
	}
	for _, m := range []string{"/consent.v1.ConsentService/Grant", "/consent.v1.ConsentService/Withdraw", "/consent.v1.CheckService/Check"} {
		if n := attempts(m); n != 2 {
			t.Errorf("%s: %d attempts, want 2 (one lost, one retried)", m, n)
		}
	}
}

// TestDefaultDeadline: a call whose context has no deadline gets the
// client's, so a stuck sidecar cannot hang a send path.
func TestDefaultDeadline(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	stall := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil, ctx.Err()
	}
	c, _ := newClientWith(t, stall, client.WithTimeout(100*time.Millisecond))
	start := time.Now()
	_, err := c.Check(context.Background(), "slow@example.com", "email_marketing")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Check on a stalled server = %v, want a deadline error", err)
	}
	if ok, _, err := c.MaySend(context.Background(), "slow@example.com", "email_marketing"); ok || err == nil {
		t.Errorf("MaySend on a stalled server = %v, %v; want false with the error", ok, err)
	}
	// Generous: the point is that it ends, not how fast.
	if waited := time.Since(start); waited > 10*time.Second {
		t.Errorf("calls took %v with a 100ms default deadline", waited)
	}
}

func TestGetContactAndPurposes(t *testing.T) {
	c := newClient(t)
	const who = "show@example.com"
	if _, err := c.Grant(ctx(t), &pb.GrantRequest{Contact: who, Purposes: []string{"email_marketing"}, Method: pb.Method_METHOD_CHECKBOX, EvidenceRef: "form-7"}); err != nil {
		t.Fatal(err)
	}
	got, err := c.GetContact(ctx(t), who)
	if err != nil {
		t.Fatal(err)
	}
	var granted []string
	for _, p := range got.GetPurposes() {
		if p.GetDecision() == pb.Decision_DECISION_ALLOW {
			granted = append(granted, p.GetPurpose()+" "+p.GetGrant().GetEvidenceRef())
		}
	}
	if diff := cmp.Diff([]string{"email_marketing form-7"}, granted); diff != "" {
		t.Errorf("GetContact allowed purposes (-want +got):\n%s", diff)
	}
	if _, err := c.GetContact(ctx(t), ""); !errors.Is(err, consent.ErrInvalid) {
		t.Errorf("GetContact(\"\") = %v, want ErrInvalid", err)
	}
	ps, err := c.ListPurposes(ctx(t))
	if err != nil || len(ps) != len(consent.DefaultPurposes()) {
		t.Fatalf("ListPurposes = %d purposes, %v; want the %d defaults", len(ps), err, len(consent.DefaultPurposes()))
	}
}

// ListEvents pages on its own: a history longer than a page comes back
// whole, in order.
func TestListEventsPages(t *testing.T) {
	c := newClient(t)
	const who = "pages@example.com"
	const n = 230 // the server's default page is 100
	for i := range n {
		req := &pb.GrantRequest{Contact: who, Purposes: []string{"email_marketing"}, Method: pb.Method_METHOD_CHECKBOX,
			EvidenceRef: fmt.Sprint("form-", i)}
		if _, err := c.Grant(ctx(t), req); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for e, err := range c.ListEvents(ctx(t), who) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, e.GetEvidenceRef())
	}
	if len(got) != n || got[0] != "form-0" || got[n-1] != fmt.Sprint("form-", n-1) {
		t.Errorf("ListEvents gave %d events (first %q, last %q), want %d in order", len(got), first(got), last(got), n)
	}
	// Stopping early stops fetching; an error is yielded once.
	count := 0
	for range c.ListEvents(ctx(t), who) {
		if count++; count == 5 {
			break
		}
	}
	var errs int
	for _, err := range c.ListEvents(ctx(t), "") {
		if !errors.Is(err, consent.ErrInvalid) {
			t.Errorf("ListEvents(\"\") yielded %v, want ErrInvalid", err)
		}
		errs++
	}
	if count != 5 || errs != 1 {
		t.Errorf("early stop after %d events, %d errors yielded; want 5 and 1", count, errs)
	}
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

func last(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[len(s)-1]
}

// A request sent twice is two writes: the request id the client adds goes on
// a copy, never into the caller's request (where the second send would be
// taken for a replay of the first and silently change nothing).
func TestReusedRequestIsANewWrite(t *testing.T) {
	c := newClient(t)
	const who = "again@example.com"
	grant := &pb.GrantRequest{Contact: who, Purposes: []string{"email_marketing"}, Method: pb.Method_METHOD_CHECKBOX}
	withdraw := &pb.WithdrawRequest{Contact: who}
	for round := range 2 {
		if _, err := c.Grant(ctx(t), grant); err != nil {
			t.Fatal(err)
		}
		tok, err := c.Withdraw(ctx(t), withdraw)
		if err != nil {
			t.Fatal(err)
		}
		if d, err := c.Check(ctx(t), who, "email_marketing", client.AtLeastAsFresh(tok)); err != nil || d.Allowed {
			t.Fatalf("round %d: Check after the withdrawal = %+v, %v; want a deny", round, d, err)
		}
	}
	if grant.GetRequestId() != "" || withdraw.GetRequestId() != "" {
		t.Errorf("the caller's requests were changed: request ids %q, %q", grant.GetRequestId(), withdraw.GetRequestId())
	}
}

// TestWriteBatch: each write of a batch gets the outcome it would get alone
// (bad input, a contact erased before, a replay), the caller's writes are
// not changed, and a batch whose answer was lost is retried and applied once.
func TestWriteBatch(t *testing.T) {
	var (
		mu   sync.Mutex
		lost bool
	)
	loseFirst := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		resp, err := h(ctx, req)
		mu.Lock()
		defer mu.Unlock()
		if info.FullMethod == "/consent.v1.ConsentService/WriteBatch" && !lost {
			lost = true
			return nil, status.Error(codes.Unavailable, "connection reset (injected)")
		}
		return resp, err
	}
	c, _ := newClientWith(t, loseFirst)
	if _, err := c.Erase(ctx(t), &pb.EraseRequest{Contact: "gone@example.com"}); err != nil {
		t.Fatal(err)
	}
	captured := timestamppb.New(time.Now().Add(-time.Hour))
	grant := func(contact, id string) *pb.BatchWrite {
		return &pb.BatchWrite{Write: &pb.BatchWrite_Grant{Grant: &pb.GrantRequest{Contact: contact, Purposes: []string{"email_marketing"},
			Method: pb.Method_METHOD_CHECKBOX, CapturedAt: captured, RequestId: id}}}
	}
	writes := []*pb.BatchWrite{
		grant("ada@example.com", "row-1"),
		grant("not a contact\x00", "row-2"),
		grant("gone@example.com", "row-3"), // captured before the erasure
		{Write: &pb.BatchWrite_Withdraw{Withdraw: &pb.WithdrawRequest{Contact: "bo@example.com"}}}, // no request id
		grant("ada@example.com", "row-1"), // the same row again
		{},
	}
	results, err := c.WriteBatch(ctx(t), writes)
	if err != nil {
		t.Fatal(err)
	}
	type outcome struct {
		Code   codes.Code
		Token  bool
		Prefix string
	}
	got := make([]outcome, len(results))
	for i, r := range results {
		got[i] = outcome{codes.Code(r.GetCode()), r.GetConsistencyToken() != "", strings.SplitN(r.GetMessage(), ":", 2)[0]}
	}
	want := []outcome{
		{codes.OK, true, ""},
		{codes.InvalidArgument, false, "contact"},
		{codes.FailedPrecondition, false, "contact is suppressed"},
		{codes.OK, true, ""},
		{codes.OK, true, ""},
		{codes.InvalidArgument, false, "write"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("outcomes (-want +got):\n%s", diff)
	}
	if results[4].GetConsistencyToken() != results[0].GetConsistencyToken() {
		t.Errorf("the same row twice: tokens %s and %s, want one", results[0].GetConsistencyToken(), results[4].GetConsistencyToken())
	}
	if writes[3].GetWithdraw().GetRequestId() != "" {
		t.Error("WriteBatch changed the caller's write")
	}
	// The batch was sent twice (the first answer lost): each write once.
	for _, who := range []string{"ada@example.com", "bo@example.com"} {
		n := 0
		for _, err := range c.ListEvents(ctx(t), who) {
			if err != nil {
				t.Fatal(err)
			}
			n++
		}
		if n != 1 {
			t.Errorf("%s has %d events after a retried batch, want 1", who, n)
		}
	}
	if d, err := c.Check(ctx(t), "ada@example.com", "email_marketing"); err != nil || d.Reason != consent.ReasonGranted {
		t.Errorf("Check after the batch = %+v, %v", d, err)
	}
}

// TestPersonRetriesApplyOnce: the writes of persons, each of which writes
// on several identifiers, are retried after a lost answer like the others,
// and each of their writes is still recorded once: the request id the
// client adds is the one consentd derives every write's from.
func TestPersonRetriesApplyOnce(t *testing.T) {
	lose, attempts := loseFirstAnswers()
	c, _ := newClientWith(t, lose)
	const email, phone, moved = "retry@example.com", "+442079460777", "retry@moved.example"
	if _, err := c.Grant(ctx(t), &pb.GrantRequest{Contact: email, Purposes: []string{"email_marketing"}, Method: pb.Method_METHOD_CHECKBOX}); err != nil {
		t.Fatalf("Grant: %v", err)
	}
	if _, err := c.LinkIdentifiers(ctx(t), &pb.LinkIdentifiersRequest{Contact: email, Others: []string{phone}}); err != nil {
		t.Fatalf("LinkIdentifiers: %v", err)
	}
	if _, err := c.Rectify(ctx(t), &pb.RectifyRequest{OldContact: email, NewContact: moved}); err != nil {
		t.Fatalf("Rectify: %v", err)
	}
	person, err := c.GetContact(ctx(t), moved, client.WholePerson())
	if err != nil {
		t.Fatalf("GetContact: %v", err)
	}
	if n := len(person.GetPerson()); n != 2 {
		t.Errorf("the moved identifier's person has %d other identifiers, want 2 (the old address and the phone)", n)
	}
	history := func(contact string) []pb.EventKind {
		var kinds []pb.EventKind
		for e, err := range c.ListEvents(ctx(t), contact) {
			if err != nil {
				t.Fatalf("ListEvents: %v", err)
			}
			kinds = append(kinds, e.GetKind())
		}
		return kinds
	}
	for _, tc := range []struct {
		contact string
		want    []pb.EventKind
	}{
		{email, []pb.EventKind{pb.EventKind_EVENT_KIND_GRANT, pb.EventKind_EVENT_KIND_LINK, pb.EventKind_EVENT_KIND_RECTIFY_TO}},
		{phone, []pb.EventKind{pb.EventKind_EVENT_KIND_LINK}},
		{moved, []pb.EventKind{pb.EventKind_EVENT_KIND_GRANT, pb.EventKind_EVENT_KIND_RECTIFY_FROM}},
	} {
		if diff := cmp.Diff(tc.want, history(tc.contact)); diff != "" {
			t.Errorf("%s's history after retried writes (-want +got):\n%s", tc.contact, diff)
		}
	}
	if _, err := c.ErasePerson(ctx(t), &pb.EraseRequest{Contact: phone}); err != nil {
		t.Fatalf("ErasePerson: %v", err)
	}
	for _, who := range []string{email, phone, moved} {
		if diff := cmp.Diff([]pb.EventKind{pb.EventKind_EVENT_KIND_ERASE}, history(who)); diff != "" {
			t.Errorf("%s's history after the person's retried erasure (-want +got):\n%s", who, diff)
		}
	}
	for _, m := range []string{"LinkIdentifiers", "Rectify", "Erase", "GetContact"} {
		if n := attempts("/consent.v1.ConsentService/" + m); n != 2 {
			t.Errorf("%s: %d attempts, want 2 (one lost, one retried)", m, n)
		}
	}
}
