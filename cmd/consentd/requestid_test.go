package main

import (
	"context"
	"errors"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/consentd/consentd/client"
	"github.com/consentd/consentd/consent"
	"github.com/consentd/consentd/internal/daemontest"
	"github.com/consentd/consentd/internal/redisproc"
	"github.com/consentd/consentd/internal/redistest"
	"github.com/consentd/consentd/internal/tokensfile"
	pb "github.com/consentd/consentd/proto/consent/v1"
)

// TestRequestIDPerCaller: request ids are one space per authenticated
// caller, on the embedded store, on two sidecars sharing Redis, and on two
// sharing a Cluster: a caller's id with a different request (another
// contact, purpose, kind or content) is INVALID_ARGUMENT naming request_id
// and changes nothing, through every write RPC, whichever sidecar takes it;
// its retry returns the first token; another caller's same id is its own.
func TestRequestIDPerCaller(t *testing.T) {
	tokens := tokensfile.Write(t, map[string]string{"crm": "crm-token", "mailer": "mailer-token"})
	t.Run("embedded", func(t *testing.T) {
		d := startDaemon(t, "--listen", "127.0.0.1:0", "--data-dir", t.TempDir(), "--tokens", tokens)
		requestIDStory(t, d.Addr, d.Addr)
	})
	t.Run("redis", func(t *testing.T) {
		srv := redistest.Start(t, redisproc.Options{})
		secret := sharedSecret(t)
		a := startSidecar(t, secret, redisURL(srv.Addr()), "--redis-init", "--tokens", tokens)
		b := startSidecar(t, secret, redisURL(srv.Addr()), "--tokens", tokens)
		requestIDStory(t, a.Addr, b.Addr)
	})
	t.Run("cluster", func(t *testing.T) {
		cluster := redistest.StartCluster(t, 3)
		secret := sharedSecret(t)
		addrs := "--redis-cluster=" + strings.Join(cluster.Addrs(), ",")
		a := startSidecar(t, secret, addrs, "--redis-init", "--tokens", tokens)
		b := startSidecar(t, secret, addrs, "--tokens", tokens)
		requestIDStory(t, a.Addr, b.Addr)
	})
}

func requestIDStory(t *testing.T, addrA, addrB string) {
	crmA := daemontest.Client(t, addrA, client.WithBearerToken("crm-token"))
	crmB := daemontest.Client(t, addrB, client.WithBearerToken("crm-token"))
	mailerB := daemontest.Client(t, addrB, client.WithBearerToken("mailer-token"))
	ctx := testCtx(t)
	grant := func(contact, purpose, id string) *pb.GrantRequest {
		return &pb.GrantRequest{Contact: contact, Purposes: []string{purpose}, Method: pb.Method_METHOD_CHECKBOX, RequestId: id, Actor: "crm"}
	}
	first, err := crmA.Grant(ctx, grant("ada@example.com", "email_marketing", "signup-1"))
	if err != nil {
		t.Fatal(err)
	}
	others := []string{"bo1@example.com", "bo2@example.com", "bo3@example.com", "bo4@example.com"}
	state := func(c *client.Client) string {
		var b strings.Builder
		for _, who := range append([]string{"ada@example.com"}, others...) {
			gc, err := c.GetContact(ctx, who)
			if err != nil {
				t.Fatal(err)
			}
			b.WriteString(who + "=" + gc.GetConsistencyToken() + " ")
		}
		return b.String()
	}
	before := state(crmA)

	reused := []struct {
		name  string
		write func(c *client.Client) error
	}{
		{"Grant, another contact", func(c *client.Client) error {
			_, err := c.Grant(ctx, grant(others[0], "email_marketing", "signup-1"))
			return err
		}},
		{"Grant, another purpose", func(c *client.Client) error {
			_, err := c.Grant(ctx, grant("ada@example.com", "sales_outreach", "signup-1"))
			return err
		}},
		{"Withdraw, another kind", func(c *client.Client) error {
			_, err := c.Withdraw(ctx, &pb.WithdrawRequest{Contact: "ada@example.com", RequestId: "signup-1", Actor: "crm"})
			return err
		}},
		{"Erase, another contact", func(c *client.Client) error {
			_, err := c.Erase(ctx, &pb.EraseRequest{Contact: others[1], RequestId: "signup-1", Actor: "crm"})
			return err
		}},
		{"WriteBatch, another contact", func(c *client.Client) error {
			res, err := c.WriteBatch(ctx, []*pb.BatchWrite{
				{Write: &pb.BatchWrite_Grant{Grant: grant(others[2], "email_marketing", "signup-1")}},
			})
			if err != nil {
				return err
			}
			if codes.Code(res[0].GetCode()) != codes.InvalidArgument || !strings.HasPrefix(res[0].GetMessage(), "request_id:") {
				return errors.New("write result " + res[0].String())
			}
			return nil
		}},
	}
	for _, c := range []struct {
		name string
		c    *client.Client
	}{{"sidecar A", crmA}, {"sidecar B", crmB}} {
		for _, tt := range reused {
			err := tt.write(c.c)
			if tt.name == "WriteBatch, another contact" {
				if err != nil {
					t.Errorf("%s on %s: %v", tt.name, c.name, err)
				}
				continue
			}
			var ce *client.Error
			if !errors.As(err, &ce) || ce.Code != codes.InvalidArgument || !strings.HasPrefix(ce.Message, "request_id:") || !errors.Is(err, consent.ErrInvalid) {
				t.Errorf("%s on %s: %v, want INVALID_ARGUMENT naming request_id", tt.name, c.name, err)
			}
		}
	}
	if got := state(crmA); got != before {
		t.Errorf("refused writes changed the store:\n%s\nwant\n%s", got, before)
	}
	// The retry, on either sidecar, is the first request.
	for _, c := range []*client.Client{crmA, crmB} {
		if tok, err := c.Grant(ctx, grant("ada@example.com", "email_marketing", "signup-1")); err != nil || tok != first {
			t.Errorf("retry: %v, %v; want the first token %v", tok, err, first)
		}
	}
	if got := state(crmA); got != before {
		t.Errorf("retries changed the store:\n%s\nwant\n%s", got, before)
	}
	// Another caller's ids are its own.
	if _, err := mailerB.Grant(ctx, grant(others[3], "email_marketing", "signup-1")); err != nil {
		t.Errorf("another caller's same id: %v, want applied", err)
	}
	if d, err := crmB.Check(context.Background(), others[3], "email_marketing", client.FullyConsistent()); err != nil || !d.Allowed {
		t.Errorf("the other caller's grant: %+v, %v; want ALLOW", d, err)
	}
}
