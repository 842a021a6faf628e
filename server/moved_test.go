package server_test

import (
	"net/http"
	"testing"

	pb "github.com/consentd/consentd/proto/consent/v1"
)

// rectified grants old email_marketing and rectifies it to each of then in
// turn (old→then[0]→then[1]...), checking the last allows it.
func rectified(t *testing.T, c *clients, old string, then ...string) {
	t.Helper()
	c.grant(t, &pb.GrantRequest{Contact: old, Purposes: []string{"email_marketing"}, EvidenceRef: "form:signup"})
	from := old
	for _, to := range then {
		if _, err := c.cons.Rectify(ctx(t), &pb.RectifyRequest{OldContact: from, NewContact: to, Actor: "dpo", RequestId: "move-" + to}); err != nil {
			t.Fatalf("Rectify(%s, %s): %v", from, to, err)
		}
		from = to
	}
	if d, r := c.checkOf(t, from, "email_marketing"); d != allow {
		t.Fatalf("Check(%s) after the move: %v %v, want ALLOW", from, d, r)
	}
}

func (c *clients) denied(t *testing.T, contact string) {
	t.Helper()
	if d, r := c.checkOf(t, contact, "email_marketing"); d != deny || r != pb.Reason_REASON_WITHDRAWN {
		t.Errorf("Check(%s): %v %v, want DENY WITHDRAWN: the withdrawal on the old identifier did not follow the move", contact, d, r)
	}
}

func (c *clients) eventCount(t *testing.T, contact string) int {
	t.Helper()
	return len(c.events(t, &pb.ListEventsRequest{Contact: contact}))
}

// TestWithdrawFollowsMove: a Withdraw naming the identifier a person moved
// from withdraws on the one they moved to (through a chain of moves), says
// so in Others, and a retry of it applies nothing twice.
func TestWithdrawFollowsMove(t *testing.T) {
	const old, mid, nu = "ada@old.example", "ada@mid.example", "ada@new.example"
	tests := []struct {
		name string
		then []string
	}{
		{"one move", []string{nu}},
		{"a chain of moves", []string{mid, nu}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := start(t)
			rectified(t, c, old, tt.then...)
			req := &pb.WithdrawRequest{Contact: old, Purposes: []string{"email_marketing"}, Actor: "support", RequestId: "stop-ada"}
			resp, err := c.cons.Withdraw(ctx(t), req)
			if err != nil {
				t.Fatal(err)
			}
			c.denied(t, nu)
			var got []string
			for _, o := range resp.GetOthers() {
				got = append(got, o.GetIdentifier().GetKey())
			}
			var want []string
			for _, to := range tt.then {
				want = append(want, c.keyOf(t, to))
			}
			if len(got) != len(want) {
				t.Fatalf("Others = %v, want %v", got, want)
			}
			for i := range want {
				if got[i] != want[i] {
					t.Errorf("Others[%d] = %s, want %s", i, got[i], want[i])
				}
			}
			before := c.eventCount(t, nu)
			again, err := c.cons.Withdraw(ctx(t), req)
			if err != nil {
				t.Fatal(err)
			}
			if n := c.eventCount(t, nu); n != before {
				t.Errorf("a retried Withdraw: %d events on the new identifier, want %d", n, before)
			}
			if g, w := again.GetOthers(), resp.GetOthers(); len(g) != len(w) || g[len(g)-1].GetConsistencyToken() != w[len(w)-1].GetConsistencyToken() {
				t.Errorf("a retried Withdraw's Others %v, want the first answer's %v", g, w)
			}
			// The moved records, as stored, match their refolded history.
			v, err := c.cons.VerifyHistory(ctx(t), &pb.VerifyHistoryRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if !v.GetIntact() {
				t.Errorf("VerifyHistory after moves: not intact: %v", v.GetPartitions())
			}
		})
	}
}

// TestWithdrawFollowsMoveCycle: identifiers moved back and forth (a→b, then
// b→a) end a withdrawal's walk where it started: b's withdrawal is written
// on a, once, and not again on b.
func TestWithdrawFollowsMoveCycle(t *testing.T) {
	const a, b = "ada@a.example", "ada@b.example"
	c := start(t)
	rectified(t, c, a, b)
	if _, err := c.cons.Rectify(ctx(t), &pb.RectifyRequest{OldContact: b, NewContact: a, Actor: "dpo", RequestId: "move-back"}); err != nil {
		t.Fatal(err)
	}
	resp, err := c.cons.Withdraw(ctx(t), &pb.WithdrawRequest{Contact: b, Purposes: []string{"email_marketing"}, RequestId: "stop-b"})
	if err != nil {
		t.Fatal(err)
	}
	if o := resp.GetOthers(); len(o) != 1 || o[0].GetIdentifier().GetKey() != c.keyOf(t, a) {
		t.Errorf("Others = %v, want a alone", o)
	}
}

// TestBatchWithdrawFollowsMove: so does a withdrawal in WriteBatch.
func TestBatchWithdrawFollowsMove(t *testing.T) {
	const old, nu = "ada@old.example", "ada@new.example"
	c := start(t)
	rectified(t, c, old, nu)
	resp, err := c.cons.WriteBatch(ctx(t), &pb.WriteBatchRequest{Writes: []*pb.BatchWrite{{Write: &pb.BatchWrite_Withdraw{
		Withdraw: &pb.WithdrawRequest{Contact: old, Purposes: []string{"email_marketing"}, RequestId: "batch-stop"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	if r := resp.GetResults()[0]; r.GetCode() != 0 {
		t.Fatalf("result: %v", r)
	}
	c.denied(t, nu)
}

// TestUnsubscribeFollowsMove: a one-click link minted for the old
// identifier, in mail sent before the move, unsubscribes the new one
// (though the move withdrew the old already), once however often clicked.
func TestUnsubscribeFollowsMove(t *testing.T) {
	const old, nu = "ada@old.example", "ada@new.example"
	w := startWeb(t)
	w.grant(t, &pb.GrantRequest{Contact: old, Purposes: []string{"email_marketing"}, EvidenceRef: "form:signup"})
	link := w.mint(t, old, "email_marketing")
	rectified(t, w.clients, old, nu)
	if code, _ := w.do(t, http.MethodPost, link); code != http.StatusOK {
		t.Fatalf("POST: %d, want 200", code)
	}
	w.denied(t, nu)
	before := w.eventCount(t, nu)
	if code, _ := w.do(t, http.MethodPost, link); code != http.StatusOK {
		t.Fatalf("second POST: %d, want 200", code)
	}
	if n := w.eventCount(t, nu); n != before {
		t.Errorf("a second click: %d events on the new identifier, want %d", n, before)
	}
}
