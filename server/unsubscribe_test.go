package server_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/consentd/consentd/consent"
	"github.com/consentd/consentd/internal/daemontest"
	"github.com/consentd/consentd/internal/testserver"
	"github.com/consentd/consentd/internal/unsubscribe"
	pb "github.com/consentd/consentd/proto/consent/v1"
	"github.com/consentd/consentd/server"
)

// clock is a settable time source for the server.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// web is a consentd stack with its unsubscribe handler on a real loopback
// HTTP server.
type web struct {
	*clients
	clock *clock
	srv   *httptest.Server
}

func startWeb(t *testing.T) *web {
	t.Helper()
	clk := &clock{t: time.Now()}
	env := testserver.Start(t, testserver.Options{Now: clk.Now})
	srv := httptest.NewServer(env.HTTP)
	t.Cleanup(srv.Close)
	return &web{
		clients: &clients{env: env, check: pb.NewCheckServiceClient(env.Conn), cons: pb.NewConsentServiceClient(env.Conn)},
		clock:   clk, srv: srv,
	}
}

func (w *web) mint(t *testing.T, contact, purpose string) string {
	t.Helper()
	resp, err := w.cons.MintUnsubscribe(ctx(t), &pb.MintUnsubscribeRequest{Contact: contact, Purpose: purpose})
	if err != nil {
		t.Fatalf("MintUnsubscribe: %v", err)
	}
	return resp.GetUnsubscribeToken()
}

// do sends method to /unsubscribe/token, the way a mail client does for a
// POST (RFC 8058's body), and returns the status and the page.
func (w *web) do(t *testing.T, method, token string) (int, string) {
	t.Helper()
	return w.request(t, method, "/unsubscribe/"+token)
}

func (w *web) request(t *testing.T, method, path string) (int, string) {
	t.Helper()
	return daemontest.Click(t, w.srv.Client(), method, w.srv.URL+path)
}

// state is what the store says about contact: every purpose's decision and
// the whole history, to compare before and after a request.
func (w *web) state(t *testing.T, contact string) string {
	t.Helper()
	gc, err := w.cons.GetContact(ctx(t), &pb.GetContactRequest{Contact: contact})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := w.cons.ListEvents(ctx(t), &pb.ListEventsRequest{Contact: contact})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("token=" + gc.GetConsistencyToken())
	for _, p := range gc.GetPurposes() {
		b.WriteString(" " + p.GetPurpose() + "=" + p.GetReason().String())
	}
	b.WriteString(" events=")
	for _, e := range ev.GetEvents() {
		b.WriteString(e.GetKind().String() + "/" + e.GetMethod().String() + ",")
	}
	return b.String()
}

func TestMintUnsubscribe(t *testing.T) {
	w := startWeb(t)
	resp, err := w.cons.MintUnsubscribe(ctx(t), &pb.MintUnsubscribeRequest{Contact: "Ada@Example.com", Purpose: "email_marketing"})
	if err != nil {
		t.Fatal(err)
	}
	want := w.clock.Now().Add(unsubscribe.DefaultTTL).Truncate(time.Second)
	if got := resp.GetExpiresAt().AsTime(); !got.Equal(want) {
		t.Errorf("expires_at = %v, want a year from now, %v", got, want)
	}
	tok := resp.GetUnsubscribeToken()
	if strings.Contains(strings.ToLower(tok), "ada") || len(tok) > 200 {
		t.Errorf("token %q is not opaque and short", tok)
	}
	// The token names the contact's key: another spelling of the contact is
	// the same person, the same token.
	if again := w.mint(t, "  ada@EXAMPLE.com", "email_marketing"); again != tok {
		t.Errorf("token for another spelling = %q, want %q", again, tok)
	}
	if other := w.mint(t, "ada@example.com", "sales_outreach"); other == tok {
		t.Error("tokens for two purposes are the same")
	}
	// Minting writes nothing.
	if got := w.state(t, "ada@example.com"); strings.Contains(got, "EVENT_KIND") {
		t.Errorf("minting wrote: %s", got)
	}
}

// TestUnsubscribeLink follows one link the way mail clients, scanners and
// people use it, over real HTTP, against the real store and cache.
func TestUnsubscribeLink(t *testing.T) {
	w := startWeb(t)
	const ada = "ada@example.com"
	w.grant(t, &pb.GrantRequest{Contact: ada, Purposes: []string{"email_marketing"}, Method: pb.Method_METHOD_DOUBLE_OPT_IN})
	w.grant(t, &pb.GrantRequest{Contact: ada, Purposes: []string{"sales_outreach"}})
	tok := w.mint(t, "Ada@Example.com", "email_marketing")
	if d, _ := w.checkOf(t, ada, "email_marketing"); d != allow { // and cached
		t.Fatalf("before: %v", d)
	}
	before := w.state(t, ada)

	// A scanner's GET (or HEAD) shows the page and changes nothing.
	code, page := w.do(t, http.MethodGet, tok)
	if code != http.StatusOK || !strings.Contains(page, `<form method="post">`) ||
		!strings.Contains(page, `name="List-Unsubscribe" value="One-Click"`) || !strings.Contains(page, "Marketing emails and newsletters") {
		t.Errorf("GET = %d\n%s\nwant 200 and a form that POSTs back", code, page)
	}
	if code, _ := w.do(t, http.MethodHead, tok); code != http.StatusOK {
		t.Errorf("HEAD = %d, want 200", code)
	}
	if d, _ := w.checkOf(t, ada, "email_marketing"); d != allow {
		t.Errorf("after GET: %v, want still ALLOW", d)
	}
	if after := w.state(t, ada); after != before {
		t.Errorf("GET changed the store:\nbefore %s\nafter  %s", before, after)
	}

	// The mail client's POST withdraws that purpose, and only that one.
	if code, page := w.do(t, http.MethodPost, tok); code != http.StatusOK || !strings.Contains(page, "unsubscribed") {
		t.Fatalf("POST = %d\n%s", code, page)
	}
	if d, r := w.checkOf(t, ada, "email_marketing"); d != deny || r != pb.Reason_REASON_WITHDRAWN {
		t.Errorf("after POST: %v/%v, want DENY/WITHDRAWN (from the cache too)", d, r)
	}
	if d, _ := w.checkOf(t, ada, "sales_outreach"); d != allow {
		t.Errorf("another purpose after POST: %v, want ALLOW", d)
	}
	events := w.events(t, ada)
	if len(events) != 3 {
		t.Fatalf("history has %d events, want 3", len(events))
	}
	last := events[2]
	want := &pb.Event{Kind: pb.EventKind_EVENT_KIND_WITHDRAW, Purposes: []string{"email_marketing"},
		Method: pb.Method_METHOD_ONE_CLICK_UNSUBSCRIBE, Actor: "one-click unsubscribe link"}
	if diff := cmp.Diff(want, last, protocmp.Transform(),
		protocmp.IgnoreFields(&pb.Event{}, "captured_at", "recorded_at", "request_id", "consistency_token")); diff != "" {
		t.Errorf("withdrawal event (-want +got):\n%s", diff)
	}
	if !strings.HasPrefix(last.GetRequestId(), "unsubscribe-") || strings.Contains(last.GetRequestId(), tok) {
		t.Errorf("request id %q: want one derived from the token, not the token", last.GetRequestId())
	}

	// Every later POST of the link, at once or later, answers 200 and applies
	// nothing more.
	done := w.state(t, ada)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if code, _ := w.do(t, http.MethodPost, tok); code != http.StatusOK {
				t.Errorf("repeated POST = %d, want 200", code)
			}
		})
	}
	wg.Wait()
	w.clock.advance(time.Hour)
	if code, _ := w.do(t, http.MethodPost, tok); code != http.StatusOK {
		t.Errorf("POST an hour later = %d, want 200", code)
	}
	if after := w.state(t, ada); after != done {
		t.Errorf("repeated POSTs changed the store:\nbefore %s\nafter  %s", done, after)
	}

	// The person signs up again, then clicks the old link: that is a new
	// withdrawal, not a retry of the first one.
	w.clock.advance(time.Minute)
	w.grant(t, &pb.GrantRequest{Contact: ada, Purposes: []string{"email_marketing"}})
	if d, _ := w.checkOf(t, ada, "email_marketing"); d != allow {
		t.Fatalf("after signing up again: %v", d)
	}
	w.clock.advance(time.Minute)
	if code, _ := w.do(t, http.MethodPost, tok); code != http.StatusOK {
		t.Errorf("POST after signing up again = %d, want 200", code)
	}
	if d, r := w.checkOf(t, ada, "email_marketing"); d != deny || r != pb.Reason_REASON_WITHDRAWN {
		t.Errorf("old link after signing up again: %v/%v, want DENY/WITHDRAWN", d, r)
	}
	if n := len(w.events(t, ada)); n != 5 {
		t.Errorf("history has %d events, want 5 (grant, grant, withdraw, grant, withdraw)", n)
	}
}

func (w *web) events(t *testing.T, contact string) []*pb.Event {
	t.Helper()
	resp, err := w.cons.ListEvents(ctx(t), &pb.ListEventsRequest{Contact: contact})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetEvents()
}

// TestUnsubscribeRefusals: forged, tampered, malformed and expired links
// are refused (403, 410) on GET and POST alike, and change nothing.
func TestUnsubscribeRefusals(t *testing.T) {
	w := startWeb(t)
	const bo = "bo@example.com"
	w.grant(t, &pb.GrantRequest{Contact: bo, Purposes: []string{"email_marketing", "market_research"}})
	tok := w.mint(t, bo, "email_marketing")
	other, err := unsubscribe.NewSigner([]byte("another deployment's secret 0123456789"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := w.env.Keys.Key(bo)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := other.Mint(unsubscribe.Token{Key: key, Purpose: "email_marketing", Expires: w.clock.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	before := w.state(t, bo)
	tests := []struct {
		name, token string
		want        int
	}{
		{"forged with another secret", forged, http.StatusForbidden},
		{"tampered key", flip(tok, 5), http.StatusForbidden},
		{"tampered expiry", flip(tok, 50), http.StatusForbidden},
		{"tampered purpose", flip(tok, 60), http.StatusForbidden},
		{"tampered MAC", flip(tok, len(tok)-3), http.StatusForbidden},
		{"truncated", tok[:len(tok)-1], http.StatusForbidden},
		{"extended", tok + "A", http.StatusForbidden},
		{"escaped line break", tok[:9] + "%0A" + tok[9:], http.StatusForbidden},
		{"garbage", "hello", http.StatusForbidden},
		{"a consent token", "AQAB", http.StatusForbidden},
	}
	for _, tt := range tests {
		for _, method := range []string{http.MethodGet, http.MethodPost} {
			if code, page := w.do(t, method, tt.token); code != tt.want || !strings.Contains(page, "not valid") {
				t.Errorf("%s: %s = %d\n%s\nwant %d", tt.name, method, code, page, tt.want)
			}
		}
	}
	// Routes other than the two answer as HTTP does.
	for _, r := range []struct {
		method, path string
		want         int
	}{
		{http.MethodPut, "/unsubscribe/" + tok, http.StatusMethodNotAllowed},
		{http.MethodDelete, "/unsubscribe/" + tok, http.StatusMethodNotAllowed},
		{http.MethodPost, "/unsubscribe/", http.StatusNotFound},
		{http.MethodPost, "/unsubscribe/" + tok + "/more", http.StatusNotFound},
		{http.MethodGet, "/", http.StatusNotFound},
	} {
		if code, _ := w.request(t, r.method, r.path); code != r.want {
			t.Errorf("%s %s = %d, want %d", r.method, r.path, code, r.want)
		}
	}
	if after := w.state(t, bo); after != before {
		t.Errorf("refused requests changed the store:\nbefore %s\nafter  %s", before, after)
	}

	// A year and a day later the genuine link has expired: 410, nothing changes.
	w.clock.advance(unsubscribe.DefaultTTL + 24*time.Hour)
	before = w.state(t, bo)
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		if code, page := w.do(t, method, tok); code != http.StatusGone || !strings.Contains(page, "expired") {
			t.Errorf("expired link: %s = %d\n%s\nwant 410", method, code, page)
		}
	}
	if after := w.state(t, bo); after != before {
		t.Errorf("expired link changed the store:\nbefore %s\nafter  %s", before, after)
	}

	// Nothing logged holds a token or the contact; the route is logged.
	logs := w.env.Logs.String()
	for _, secret := range []string{tok, forged, tok[:40], bo} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs contain %q", secret)
		}
	}
	if !strings.Contains(logs, `route="POST /unsubscribe/{token}" status=403`) {
		t.Errorf("refusals are not logged by route and status:\n%s", logs)
	}
}

// TestUnsubscribeFailures: a genuine link whose purpose left the registry is
// gone (410); a store that cannot be reached is a 503 to retry. Both change
// nothing. The handlers run against the test stack's store, keys and secret.
func TestUnsubscribeFailures(t *testing.T) {
	w := startWeb(t)
	const cy = "cy@example.com"
	w.grant(t, &pb.GrantRequest{Contact: cy, Purposes: []string{"email_marketing", "ad_retargeting"}})
	tok := w.mint(t, cy, "ad_retargeting")
	secret, err := os.ReadFile(filepath.Join(w.env.Dir, "secret"))
	if err != nil {
		t.Fatal(err)
	}
	signer, err := unsubscribe.NewSigner(secret)
	if err != nil {
		t.Fatal(err)
	}
	emailOnly, err := consent.NewRegistry(consent.DefaultPurposes()[:1])
	if err != nil {
		t.Fatal(err)
	}
	all, err := consent.NewRegistry(consent.DefaultPurposes())
	if err != nil {
		t.Fatal(err)
	}
	before := w.state(t, cy)
	tests := []struct {
		name     string
		store    server.Store
		purposes *consent.Registry
		want     int
		says     string
	}{
		{"purpose no longer registered", w.env.Store, emailOnly, http.StatusGone, "no longer works"},
		{"store unreachable", downStore{w.env.Store}, all, http.StatusServiceUnavailable, "try again"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := server.New(server.Config{Keys: w.env.Keys, Records: w.env.Cache, Store: tt.store, Purposes: tt.purposes, Unsubscribe: signer}).
				HTTPHandler(slog.New(slog.DiscardHandler))
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/unsubscribe/"+tok, strings.NewReader("List-Unsubscribe=One-Click")))
			if rec.Code != tt.want || !strings.Contains(rec.Body.String(), tt.says) {
				t.Errorf("POST = %d\n%s\nwant %d saying %q", rec.Code, rec.Body, tt.want, tt.says)
			}
			if after := w.state(t, cy); after != before {
				t.Errorf("store changed:\nbefore %s\nafter  %s", before, after)
			}
			if tt.want != http.StatusGone {
				return
			}
			// The page says so too, without a button that could only fail.
			rec = httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/unsubscribe/"+tok, nil))
			if rec.Code != http.StatusGone || strings.Contains(rec.Body.String(), "<button") {
				t.Errorf("GET = %d\n%s\nwant %d without a button", rec.Code, rec.Body, http.StatusGone)
			}
		})
	}
}

// downStore is a store whose writes cannot reach it.
type downStore struct{ server.Store }

func (downStore) Apply(context.Context, consent.Write) (consent.ConsistencyToken, error) {
	return consent.ConsistencyToken{}, errors.Join(consent.ErrUnavailable, errors.New("dial tcp: connection refused"))
}
