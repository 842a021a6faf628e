package main

import (
	"errors"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/consentd/consentd/client"
	"github.com/consentd/consentd/consent"
	"github.com/consentd/consentd/internal/daemontest"
	"github.com/consentd/consentd/internal/redisproc"
	"github.com/consentd/consentd/internal/redistest"
	pb "github.com/consentd/consentd/proto/consent/v1"
)

// browser is a browser or mail client: no cookies, no connection kept after
// the test.
func browser(t *testing.T) *http.Client {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// history returns contact's events and how many of them are one-click
// withdrawals.
func history(t *testing.T, c *client.Client, contact string) (events []*pb.Event, oneClick int) {
	t.Helper()
	for e, err := range c.ListEvents(testCtx(t), contact) {
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, e)
		if e.GetKind() == pb.EventKind_EVENT_KIND_WITHDRAW && e.GetMethod() == pb.Method_METHOD_ONE_CLICK_UNSUBSCRIBE {
			oneClick++
		}
	}
	return events, oneClick
}

func mustCheck(t *testing.T, c *client.Client, contact, purpose string, opts ...client.CheckOption) consent.Decision {
	t.Helper()
	d, err := c.Check(testCtx(t), contact, purpose, opts...)
	if err != nil {
		t.Fatalf("Check(%s): %v", purpose, err)
	}
	return d
}

func grantAll(t *testing.T, c *client.Client, contact string, purposes ...string) {
	t.Helper()
	if _, err := c.Grant(testCtx(t), &pb.GrantRequest{Contact: contact, Purposes: purposes, Method: pb.Method_METHOD_DOUBLE_OPT_IN}); err != nil {
		t.Fatal(err)
	}
}

// tamper changes one character in the middle of a link's token.
func tamper(link string) string {
	i := strings.LastIndex(link, "/") + 20
	c := byte('A')
	if link[i] == 'A' {
		c = 'B'
	}
	return link[:i] + string(c) + link[i+1:]
}

// unsubscribeStory is the whole one-click story against a running consentd,
// minting through c and clicking on httpAddr: a scanner's GET changes
// nothing; the mail client's POST withdraws the purpose, once, however often
// it comes; a tampered link is refused and changes nothing.
func unsubscribeStory(t *testing.T, c *client.Client, httpAddr string) {
	t.Helper()
	const who = "Ada.Unsub@Example.com"
	hc := browser(t)
	grantAll(t, c, who, "email_marketing", "sales_outreach")
	link, err := c.UnsubscribeURL(testCtx(t), "http://"+httpAddr, who, "email_marketing")
	if err != nil {
		t.Fatal(err)
	}
	if d := mustCheck(t, c, who, "email_marketing"); !d.Allowed { // and cached
		t.Fatalf("before: %+v", d)
	}
	before, _ := history(t, c, who)

	code, page := daemontest.Click(t, hc, http.MethodGet, link)
	if code != http.StatusOK || !strings.Contains(page, `<form method="post">`) {
		t.Fatalf("GET = %d\n%s\nwant 200 and a confirmation form", code, page)
	}
	if d := mustCheck(t, c, who, "email_marketing"); !d.Allowed {
		t.Errorf("after GET: %+v, want still ALLOW", d)
	}
	if events, _ := history(t, c, who); len(events) != len(before) {
		t.Errorf("GET wrote: %d events, want %d", len(events), len(before))
	}

	if code, page := daemontest.Click(t, hc, http.MethodPost, link); code != http.StatusOK {
		t.Fatalf("POST = %d\n%s", code, page)
	}
	if d := mustCheck(t, c, who, "email_marketing"); d.Allowed || d.Reason != consent.ReasonWithdrawn {
		t.Errorf("after POST: %+v, want DENY/withdrawn", d)
	}
	if d := mustCheck(t, c, who, "sales_outreach"); !d.Allowed {
		t.Errorf("the other purpose after POST: %+v, want ALLOW", d)
	}
	events, oneClick := history(t, c, who)
	if oneClick != 1 || len(events) != len(before)+1 {
		t.Fatalf("after POST: %d events, %d one-click withdrawals; want %d and 1", len(events), oneClick, len(before)+1)
	}
	if last := events[len(events)-1]; last.GetMethod() != pb.Method_METHOD_ONE_CLICK_UNSUBSCRIBE ||
		strings.Join(last.GetPurposes(), ",") != "email_marketing" {
		t.Errorf("withdrawal event = %v", last)
	}

	for range 3 {
		if code, _ := daemontest.Click(t, hc, http.MethodPost, link); code != http.StatusOK {
			t.Errorf("repeated POST = %d, want 200", code)
		}
	}
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		if code, _ := daemontest.Click(t, hc, method, tamper(link)); code != http.StatusForbidden {
			t.Errorf("tampered link: %s = %d, want 403", method, code)
		}
	}
	if again, n := history(t, c, who); len(again) != len(events) || n != 1 {
		t.Errorf("repeated and tampered POSTs: %d events, %d one-click withdrawals; want %d and 1", len(again), n, len(events))
	}

	// Signed up again, the person clicks the old link: withdrawn again.
	grantAll(t, c, who, "email_marketing")
	if code, _ := daemontest.Click(t, hc, http.MethodPost, link); code != http.StatusOK {
		t.Errorf("POST after signing up again = %d, want 200", code)
	}
	if d := mustCheck(t, c, who, "email_marketing"); d.Allowed {
		t.Errorf("old link after signing up again: %+v, want DENY", d)
	}
	if _, n := history(t, c, who); n != 2 {
		t.Errorf("%d one-click withdrawals after signing up again, want 2", n)
	}
}

// expiredLink mints a link on a consentd started with a tiny
// --unsubscribe-ttl, lets it expire, and clicks it on httpAddr: 410, and
// nothing changes.
func expiredLink(t *testing.T, minter, checker *client.Client, httpAddr string) {
	t.Helper()
	const who = "bo.expired@example.com"
	grantAll(t, minter, who, "email_marketing")
	link, err := minter.UnsubscribeURL(testCtx(t), "http://"+httpAddr, who, "email_marketing")
	if err != nil {
		t.Fatal(err)
	}
	before, _ := history(t, checker, who)
	time.Sleep(1100 * time.Millisecond) // the TTL is 1s; expiries are whole seconds, rounded down
	hc := browser(t)
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		if code, page := daemontest.Click(t, hc, method, link); code != http.StatusGone || !strings.Contains(page, "expired") {
			t.Errorf("expired link: %s = %d\n%s\nwant 410", method, code, page)
		}
	}
	if d := mustCheck(t, checker, who, "email_marketing", client.FullyConsistent()); !d.Allowed {
		t.Errorf("after an expired link: %+v, want still ALLOW", d)
	}
	if after, _ := history(t, checker, who); len(after) != len(before) {
		t.Errorf("expired link wrote: %d events, want %d", len(after), len(before))
	}
}

func TestOneClickUnsubscribeEmbedded(t *testing.T) {
	dir := t.TempDir()
	d := startDaemon(t, "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--data-dir", dir)
	unsubscribeStory(t, daemontest.Client(t, d.Addr), d.HTTP)

	// The HTTP listener stops with consentd, which still exits cleanly.
	if code := d.Stop(t); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d, want 0", code)
	}
	if conn, err := net.DialTimeout("tcp", d.HTTP, time.Second); err == nil {
		conn.Close()
		t.Errorf("HTTP listener %s still accepts after exit", d.HTTP)
	}

	d = startDaemon(t, "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--data-dir", dir, "--unsubscribe-ttl", "1s")
	c := daemontest.Client(t, d.Addr)
	expiredLink(t, c, c, d.HTTP)
}

// TestOneClickUnsubscribeRedis runs the story on a sidecar sharing Redis,
// checks that a link minted by one sidecar works on another with the same
// secret, and that an expired one is refused by both.
func TestOneClickUnsubscribeRedis(t *testing.T) {
	srv := redistest.Start(t, redisproc.Options{})
	secret := sharedSecret(t)
	a := startSidecar(t, secret, redisURL(srv.Addr()), "--redis-init", "--http", "127.0.0.1:0")
	b := startSidecar(t, secret, redisURL(srv.Addr()), "--http", "127.0.0.1:0", "--unsubscribe-ttl", "1s")
	ca, cb := daemontest.Client(t, a.Addr), daemontest.Client(t, b.Addr)
	unsubscribeStory(t, ca, a.HTTP)

	const who = "cy.across@example.com"
	grantAll(t, ca, who, "market_research")
	link, err := ca.UnsubscribeURL(testCtx(t), "http://"+b.HTTP, who, "market_research")
	if err != nil {
		t.Fatal(err)
	}
	if code, _ := daemontest.Click(t, browser(t), http.MethodPost, link); code != http.StatusOK {
		t.Fatalf("A's link POSTed to B = %d, want 200", code)
	}
	if d := mustCheck(t, ca, who, "market_research", client.FullyConsistent()); d.Allowed || d.Reason != consent.ReasonWithdrawn {
		t.Errorf("on A after a click on B: %+v, want DENY/withdrawn", d)
	}

	expiredLink(t, cb, ca, a.HTTP)
}

func TestUnsubscribeFlags(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	tests := []struct {
		name string
		args []string
		code int
		says string
	}{
		{"zero TTL", []string{"--unsubscribe-ttl", "0s"}, 2, "--unsubscribe-ttl: must be positive"},
		{"negative TTL", []string{"--unsubscribe-ttl", "-1h"}, 2, "--unsubscribe-ttl: must be positive"},
		{"TTL past the year 9999", []string{"--unsubscribe-ttl", "1000000h"}, 2, "--unsubscribe-ttl: must be positive and at most 100 years"},
		{"TTL without a unit", []string{"--unsubscribe-ttl", "365"}, 2, `invalid value "365" for flag --unsubscribe-ttl`},
		{"address without a port", []string{"--http", "localhost"}, 2, "--http: want host:port"},
		{"address taken", []string{"--listen", "127.0.0.1:0", "--http", busy.Addr().String(), "--data-dir", t.TempDir()}, 1, "address already in use"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := daemontest.Command(t, tt.args...)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != tt.code || !strings.Contains(string(out), tt.says) {
				t.Errorf("exit %v, output %q; want exit %d mentioning %q", err, out, tt.code, tt.says)
			}
		})
	}
}

// TestReadmeUnsubscribeSession runs the one-click unsubscribe session of
// docs/senders.md (grpcurl, curl and jq) against a fresh consentd with
// --http.
func TestReadmeUnsubscribeSession(t *testing.T) {
	steps := daemontest.DocSession(t, "docs/senders.md", "unsubscribe-session")
	d := startDaemon(t, "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--data-dir", t.TempDir())
	runSteps(t, steps, map[string]string{"127.0.0.1:50051": d.Addr, "127.0.0.1:8080": d.HTTP})
}

// TestWithdrawalAfterErasure clicks a link minted before the contact was
// erased: the click is taken (200, one withdrawal recorded however often it
// comes), and the contact stays erased, erased_at as it was, every purpose
// ERASED, not WITHDRAWN; so do a Withdraw and a WriteBatch withdrawal after
// it, and the history still verifies. A fresh first-party grant after all
// that re-subscribes the contact for its purpose. On both stores.
func TestWithdrawalAfterErasure(t *testing.T) {
	t.Run("embedded", func(t *testing.T) {
		d := startDaemon(t, "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--data-dir", t.TempDir())
		withdrawalAfterErasure(t, daemontest.Client(t, d.Addr), d.HTTP)
	})
	t.Run("redis", func(t *testing.T) {
		srv := redistest.Start(t, redisproc.Options{})
		d := startSidecar(t, sharedSecret(t), redisURL(srv.Addr()), "--redis-init", "--http", "127.0.0.1:0")
		withdrawalAfterErasure(t, daemontest.Client(t, d.Addr), d.HTTP)
	})
}

func withdrawalAfterErasure(t *testing.T, c *client.Client, httpAddr string) {
	const who = "ada.erased@example.com"
	grantAll(t, c, who, "email_marketing", "sales_outreach")
	link, err := c.UnsubscribeURL(testCtx(t), "http://"+httpAddr, who, "email_marketing")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Erase(testCtx(t), &pb.EraseRequest{Contact: who}); err != nil {
		t.Fatal(err)
	}
	state := func() (erasedAt time.Time, reasons string) {
		t.Helper()
		gc, err := c.GetContact(testCtx(t), who)
		if err != nil {
			t.Fatal(err)
		}
		var rs []string
		for _, p := range gc.GetPurposes() {
			rs = append(rs, p.GetPurpose()+"="+p.GetReason().String())
		}
		if gc.GetErasedAt() != nil {
			erasedAt = gc.GetErasedAt().AsTime()
		}
		return erasedAt, strings.Join(rs, " ")
	}
	erasedAt, want := state()
	if erasedAt.IsZero() || strings.Contains(want, "WITHDRAWN") {
		t.Fatalf("after the erasure: erased at %v, %s; want erased", erasedAt, want)
	}
	stillErased := func(after string) {
		t.Helper()
		if gotAt, got := state(); !gotAt.Equal(erasedAt) || got != want {
			t.Errorf("after %s: erased at %v, %s\nwant erased at %v, %s", after, gotAt, got, erasedAt, want)
		}
		if d := mustCheck(t, c, who, "email_marketing", client.FullyConsistent()); d.Allowed || d.Reason != consent.ReasonErased {
			t.Errorf("Check after %s: %+v, want DENY/erased", after, d)
		}
	}

	for range 3 {
		if code, page := daemontest.Click(t, browser(t), http.MethodPost, link); code != http.StatusOK {
			t.Fatalf("POST after the erasure = %d\n%s", code, page)
		}
	}
	if _, n := history(t, c, who); n != 1 {
		t.Errorf("%d one-click withdrawals recorded after the erasure (3 POSTs), want 1", n)
	}
	stillErased("the click")

	if _, err := c.Withdraw(testCtx(t), &pb.WithdrawRequest{Contact: who}); err != nil {
		t.Fatal(err)
	}
	stillErased("a Withdraw of every purpose")
	res, err := c.WriteBatch(testCtx(t), []*pb.BatchWrite{{Write: &pb.BatchWrite_Withdraw{Withdraw: &pb.WithdrawRequest{
		Contact: who, Purposes: []string{"sales_outreach"}, RequestId: "batch-1"}}}})
	if err != nil || len(res) != 1 || res[0].GetCode() != 0 {
		t.Fatalf("WriteBatch withdrawal: %v, %v", res, err)
	}
	stillErased("a WriteBatch withdrawal")

	v, err := c.VerifyHistory(testCtx(t))
	if err != nil || !v.GetIntact() {
		t.Errorf("VerifyHistory: %v, %v; want intact", v, err)
	}

	grantAll(t, c, who, "email_marketing")
	if d := mustCheck(t, c, who, "email_marketing", client.FullyConsistent()); !d.Allowed {
		t.Errorf("a fresh first-party grant after the erasure: %+v, want ALLOW", d)
	}
	if gotAt, _ := state(); !gotAt.Equal(erasedAt) {
		t.Errorf("erased_at after a fresh grant: %v, want %v (kept: it refuses older grants)", gotAt, erasedAt)
	}
}
