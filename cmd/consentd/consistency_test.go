package main

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/consentd/consentd/client"
	"github.com/consentd/consentd/consent"
	"github.com/consentd/consentd/internal/redisproc"
	"github.com/consentd/consentd/internal/redistest"
	pb "github.com/consentd/consentd/proto/consent/v1"
)

// tokenClients are the two real clients of one consentd: the Go client,
// which sends tokens it parsed, and the generated one, which sends any text.
type tokenClients struct {
	cl    *client.Client
	check pb.CheckServiceClient
	cons  pb.ConsentServiceClient
}

func newTokenClients(t *testing.T, addr string) *tokenClients {
	t.Helper()
	cl, err := client.New(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	conn := dial(t, addr)
	return &tokenClients{cl: cl, check: pb.NewCheckServiceClient(conn), cons: pb.NewConsentServiceClient(conn)}
}

const tokenContact = "fresh@example.com"

// grant records a grant of tokenContact and returns its consistency token.
func (c *tokenClients) grant(t *testing.T) consent.ConsistencyToken {
	t.Helper()
	tok, err := c.cl.Grant(testCtx(t), &pb.GrantRequest{Contact: tokenContact, Purposes: []string{"email_marketing"},
		Method: pb.Method_METHOD_CHECKBOX, RequestId: client.NewRequestID()})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// works checks that an issued token is good for what tokens are for: a check
// at least as fresh as its write, and paging through the history.
func (c *tokenClients) works(t *testing.T, tok consent.ConsistencyToken, events int) {
	t.Helper()
	if _, err := c.cl.Check(testCtx(t), tokenContact, "email_marketing", client.AtLeastAsFresh(tok)); err != nil {
		t.Errorf("Check at least as fresh as an issued token: %v", err)
	}
	seen, page := 0, ""
	for pages := 0; pages <= events; pages++ {
		resp, err := c.cons.ListEvents(testCtx(t), &pb.ListEventsRequest{Contact: tokenContact, PageSize: 1, PageToken: page})
		if err != nil {
			t.Fatalf("ListEvents, page %d: %v", pages, err)
		}
		seen += len(resp.GetEvents())
		if page = resp.GetNextPageToken(); page == "" {
			break
		}
	}
	if seen != events {
		t.Errorf("paging one event at a time listed %d events, want %d", seen, events)
	}
}

// refuses checks that consentd refuses text, a token it did not issue, in
// each field that takes one, saying so, through both clients.
func (c *tokenClients) refuses(t *testing.T, text string) {
	t.Helper()
	const notIssued = "not a consistency token this consentd store issued"
	if tok, err := consent.ParseConsistencyToken(text); err == nil {
		_, err := c.cl.Check(testCtx(t), tokenContact, "email_marketing", client.AtLeastAsFresh(tok))
		var e *client.Error
		if !errors.As(err, &e) || !errors.Is(err, consent.ErrInvalid) || e.Message != "consistency.at_least_as_fresh: "+notIssued {
			t.Errorf("client Check at least as fresh as %q: %v, want INVALID_ARGUMENT naming consistency.at_least_as_fresh", text, err)
		}
	}
	_, err := c.check.Check(testCtx(t), &pb.CheckRequest{Contact: tokenContact, Purpose: "email_marketing",
		Consistency: &pb.Consistency{Requirement: &pb.Consistency_AtLeastAsFresh{AtLeastAsFresh: text}}})
	wantInvalid(t, err, "consistency.at_least_as_fresh: "+notIssued)
	_, err = c.cons.ListEvents(testCtx(t), &pb.ListEventsRequest{Contact: tokenContact, PageToken: text})
	wantInvalid(t, err, "page_token: "+notIssued)
}

func wantInvalid(t *testing.T, err error, msg string) {
	t.Helper()
	if st := status.Convert(err); st.Code() != codes.InvalidArgument || st.Message() != msg {
		t.Errorf("got %v %q, want InvalidArgument %q", st.Code(), st.Message(), msg)
	}
}

// versionOne is tok's text as consentd spelled it before tokens carried a
// tag.
func versionOne(tok consent.ConsistencyToken) string {
	b := binary.AppendUvarint([]byte{1}, uint64(tok.Partition))
	return base64.RawURLEncoding.EncodeToString(binary.AppendUvarint(b, tok.Seq))
}

func writeSecret(t *testing.T, secret string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "consentd.secret")
	if err := os.WriteFile(path, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestConsistencyTokensOfThisStoreOnly: consentd takes back, in
// at_least_as_fresh and as a page token, only the consistency tokens its
// store issued, on either store: made up, altered, of the version before
// tags, of another secret or of another store with the same secret (a new
// data directory; a Redis wiped and initialised again), each is refused
// with INVALID_ARGUMENT naming the field.
func TestConsistencyTokensOfThisStoreOnly(t *testing.T) {
	// A token of another deployment, with a secret of its own.
	foreign := newTokenClients(t, startDaemon(t, "--listen", "127.0.0.1:0", "--data-dir", t.TempDir()).Addr).grant(t)
	cases := func(t *testing.T, c *tokenClients, issued, sameSecret consent.ConsistencyToken) {
		flipped := issued
		flipped.Tag ^= 1 << 40
		for _, tt := range []struct{ name, text string }{
			{"made up in the format of the version before", "AQIC"},
			{"made up", consent.ConsistencyToken{Partition: issued.Partition, Seq: issued.Seq, Tag: 0x0123456789abcdef}.String()},
			{"one bit flipped", flipped.String()},
			{"the issued one in the format of the version before", versionOne(issued)},
			{"of another secret", foreign.String()},
			{"of another store with the same secret", sameSecret.String()},
		} {
			t.Run(tt.name, func(t *testing.T) { c.refuses(t, tt.text) })
		}
	}

	t.Run("embedded", func(t *testing.T) {
		secret := writeSecret(t, "the embedded tests' secret, 0123456789")
		start := func() *tokenClients {
			return newTokenClients(t, startDaemon(t, "--listen", "127.0.0.1:0", "--data-dir", t.TempDir(), "--secret-file", secret).Addr)
		}
		c := start()
		c.grant(t)
		issued := c.grant(t)
		c.works(t, issued, 2)
		cases(t, c, issued, start().grant(t))
	})

	t.Run("redis", func(t *testing.T) {
		srv := redistest.Start(t, redisproc.Options{})
		secret := writeSecret(t, "the redis tests' secret, 0123456789")
		a := startSidecar(t, secret, redisURL(srv.Addr()), "--redis-init")
		wiped := newTokenClients(t, a.Addr).grant(t)
		// The store is wiped, and made again with the same secret.
		a.Stop(t)
		if err := srv.Client(t).FlushAll(testCtx(t)).Err(); err != nil {
			t.Fatal(err)
		}
		a = startSidecar(t, secret, redisURL(srv.Addr()), "--redis-init")
		b := newTokenClients(t, startSidecar(t, secret, redisURL(srv.Addr())).Addr)
		onA := newTokenClients(t, a.Addr)
		onA.grant(t)
		issued := onA.grant(t)
		// A token is the store's, not the sidecar's: B takes A's.
		b.works(t, issued, 2)
		cases(t, b, issued, wiped)
	})
}
