package main

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/consentd/consentd/client"
	"github.com/consentd/consentd/consent"
	"github.com/consentd/consentd/internal/daemontest"
	"github.com/consentd/consentd/internal/redisproc"
	"github.com/consentd/consentd/internal/redistest"
	pb "github.com/consentd/consentd/proto/consent/v1"
)

// spellings are issue 17's cases: one identifier written three ways.
var spellings = []struct {
	name  string
	forms []string
}{
	{"phone", []string{"+44 20 7946 0958", "+442079460958", "020 7946 0958"}}, // the last national: --default-region GB
	{"email case", []string{"Ada@Example.COM", "ada@example.com", " ADA@example.com "}},
	{"IDN domain", []string{"ada@bücher.example", "ada@xn--bcher-kva.example", "Ada@BU\u0308CHER.example"}},
	{"external id", []string{"CRM:12345", "crm:12345", " crm:12345"}},
}

// identityStores start consentd with extra flags on each store: the
// embedded file and a real standalone redis-server.
func identityStores() []struct {
	name  string
	start func(t *testing.T, extra ...string) *daemontest.Daemon
} {
	return []struct {
		name  string
		start func(t *testing.T, extra ...string) *daemontest.Daemon
	}{
		{"embedded", func(t *testing.T, extra ...string) *daemontest.Daemon {
			return startDaemon(t, append([]string{"--data-dir", t.TempDir()}, extra...)...)
		}},
		{"redis", func(t *testing.T, extra ...string) *daemontest.Daemon {
			srv := redistest.Start(t, redisproc.Options{})
			return startDaemon(t, append([]string{redisURL(srv.Addr()), "--redis-init", "--secret-file", sharedSecret(t)}, extra...)...)
		}},
	}
}

// TestSpellingsAreOneContact: a grant in one spelling and a withdrawal in
// another are one contact's, through a real consentd and the real client,
// on both stores: Check, BatchCheck and an audience answer DENY/WITHDRAWN
// under every spelling, and a one-click unsubscribe link minted for a third
// spelling withdraws the purpose granted under the first.
func TestSpellingsAreOneContact(t *testing.T) {
	for _, st := range identityStores() {
		t.Run(st.name, func(t *testing.T) {
			d := st.start(t, "--default-region", "GB", "--http", "127.0.0.1:0")
			c := daemontest.Client(t, d.Addr)
			hc := browser(t)
			for _, sp := range spellings {
				t.Run(sp.name, func(t *testing.T) {
					granted, withdrawn, third := sp.forms[0], sp.forms[1], sp.forms[2]
					grantAll(t, c, granted, "email_marketing", "sales_outreach")
					if d := mustCheck(t, c, third, "email_marketing"); !d.Allowed {
						t.Fatalf("Check(%q) after Grant(%q) = %+v, want ALLOW", third, granted, d)
					}
					if _, err := c.Withdraw(testCtx(t), &pb.WithdrawRequest{Contact: withdrawn, Purposes: []string{"email_marketing"}}); err != nil {
						t.Fatal(err)
					}
					for _, form := range sp.forms {
						if d := mustCheck(t, c, form, "email_marketing"); d.Allowed || d.Reason != consent.ReasonWithdrawn {
							t.Errorf("Check(%q) = %+v, want DENY/withdrawn", form, d)
						}
					}
					ds, err := c.BatchCheck(testCtx(t), "email_marketing", sp.forms)
					if err != nil {
						t.Fatal(err)
					}
					for i, d := range ds {
						if d.Allowed || d.Reason != consent.ReasonWithdrawn {
							t.Errorf("BatchCheck[%q] = %+v, want DENY/withdrawn", sp.forms[i], d)
						}
					}
					var allowed []string
					sum, err := c.Filter(testCtx(t), "email_marketing", func(yield func(string) bool) {
						for _, f := range sp.forms {
							if !yield(f) {
								return
							}
						}
					}, func(s string) error { allowed = append(allowed, s); return nil })
					if err != nil || len(allowed) != 0 || sum.Invalid != 0 {
						t.Errorf("audience allowed %q (summary %+v, %v), want none and none invalid", allowed, sum, err)
					}

					link, err := c.UnsubscribeURL(testCtx(t), "http://"+d.HTTP, third, "sales_outreach")
					if err != nil {
						t.Fatal(err)
					}
					if code, page := daemontest.Click(t, hc, http.MethodPost, link); code != http.StatusOK {
						t.Fatalf("POST %s = %d\n%s", link, code, page)
					}
					if d := mustCheck(t, c, granted, "sales_outreach"); d.Allowed || d.Reason != consent.ReasonWithdrawn {
						t.Errorf("Check(%q) after the link for %q = %+v, want DENY/withdrawn", granted, third, d)
					}
				})
			}
		})
	}
}

// TestInvisibleCharactersRefused: an identifier with zero-width or bidi
// characters, inside or around it, looks like another; every write and read
// refuses it with INVALID_ARGUMENT naming the contact and the rule, and
// nothing changes, on both stores.
func TestInvisibleCharactersRefused(t *testing.T) {
	const rule = "contact: must not contain invisible or bidirectional control characters (zero-width, bidi marks)"
	for _, st := range identityStores() {
		t.Run(st.name, func(t *testing.T) {
			d := st.start(t)
			c := daemontest.Client(t, d.Addr)
			const ada = "ada@example.com"
			grantAll(t, c, ada, "email_marketing")
			before, _ := history(t, c, ada)
			for _, bad := range []string{
				"ada\u200b@example.com",             // zero-width space
				"ad\u200da@example.com",             // zero-width joiner
				"ada@example.com\u200c",             // zero-width non-joiner after
				"\ufeffada@example.com",             // BOM before
				"\u202eada@example.com",             // right-to-left override
				"\u2066ada@example.com\u2069",       // isolate around
				"ada@\u200fexample.com",             // right-to-left mark
				" \u200b ada@example.com",           // between the spaces trimmed
				"+44\u200b20 7946 0958",             // in a phone number
				"crm:12345\u2060",                   // word joiner after an external id
				"\u202aada@example.com\u202c",       // embedding and pop
				"ada\u034f@example.com",             // combining grapheme joiner
				"ada@exam\u00adple.com",             // soft hyphen
				"\u2067\u200eada@example.com\u2069", // nested
			} {
				calls := map[string]func() error{
					"Withdraw": func() error {
						_, err := c.Withdraw(testCtx(t), &pb.WithdrawRequest{Contact: bad})
						return err
					},
					"Erase": func() error { _, err := c.Erase(testCtx(t), &pb.EraseRequest{Contact: bad}); return err },
					"Grant": func() error {
						_, err := c.Grant(testCtx(t), &pb.GrantRequest{Contact: bad, Purposes: []string{"email_marketing"}, Method: pb.Method_METHOD_CHECKBOX})
						return err
					},
					"Check": func() error { _, err := c.Check(testCtx(t), bad, "email_marketing"); return err },
				}
				for name, call := range calls {
					var ce *client.Error
					if err := call(); !errors.As(err, &ce) || ce.Code != codes.InvalidArgument || ce.Message != rule {
						t.Errorf("%s(%q) = %v, want InvalidArgument %q", name, bad, err, rule)
					}
				}
			}
			if d := mustCheck(t, c, ada, "email_marketing"); !d.Allowed {
				t.Errorf("after the refusals: %+v, want ALLOW", d)
			}
			if after, _ := history(t, c, ada); len(after) != len(before) {
				t.Errorf("the refusals wrote: %d events, want %d", len(after), len(before))
			}
			if strings.Contains(d.Logs(), "\u200b") {
				t.Error("a refused contact reached the log")
			}
		})
	}
}
