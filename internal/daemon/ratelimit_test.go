package daemon

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/consentd/consentd/client"
	"github.com/consentd/consentd/internal/promscrape"
	"github.com/consentd/consentd/internal/tokensfile"
)

// rateLimitPolicy limits the mailer and the ads agency to 5 calls at once
// refilled so slowly (one token every 1,000 s) that no token comes back
// while the test runs: the test counts calls, never time.
// rateLimitPolicy is that policy with the mailer's burst and the crm's
// purposes.
func rateLimitPolicy(mailerBurst int, crmPurposes string) string {
	return fmt.Sprintf(`{"callers": {
	"mailer": {"rpcs": ["Check"], "purposes": ["email_marketing"], "rate": {"per_second": 0.001, "burst": %d}},
	"ads-agency": {"rpcs": ["FilterAudience"], "purposes": ["ad_retargeting"], "rate": {"per_second": 0.001, "burst": 5}},
	"crm": {"rpcs": ["Check"], "purposes": [%s]}
}}`, mailerBurst, crmPurposes)
}

// TestRateLimit: through a real consentd with tokens and a policy, a caller
// limited to a burst of 5 gets RESOURCE_EXHAUSTED, naming its limit, from
// its 6th immediate call on, while an unlimited caller is not affected; a
// flood of refusals is one log line and is counted in the RPC metrics; a
// reload that leaves the caller's limit alone keeps its empty bucket, and
// one that raises it takes effect at once.
func TestRateLimit(t *testing.T) {
	tokens := map[string]string{"mailer": "mail-token", "crm": "crm-token", "ads-agency": "ads-token"}
	file := filepath.Join(t.TempDir(), "policy.json")
	writePolicy(t, file, rateLimitPolicy(5, `"sales_outreach"`))
	cfg := testConfig(t)
	cfg.MetricsListen, cfg.TokensFile, cfg.PolicyFile = "127.0.0.1:0", tokensfile.Write(t, tokens), file
	d := startDaemon(t, cfg)
	c := map[string]*client.Client{}
	for name, token := range tokens {
		cl, err := client.New(d.addr, client.WithBearerToken(token), client.WithTimeout(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cl.Close() })
		c[name] = cl
	}
	ctx := context.Background()
	check := func(caller, purpose string) error {
		_, err := c[caller].Check(ctx, contactGranted, purpose)
		return err
	}
	calls := func(caller, purpose string, n int) []codes.Code {
		var got []codes.Code
		for range n {
			got = append(got, codeOf(check(caller, purpose)))
		}
		return got
	}
	want := func(ok, exhausted int) []codes.Code {
		return append(slices.Repeat([]codes.Code{codes.OK}, ok), slices.Repeat([]codes.Code{codes.ResourceExhausted}, exhausted)...)
	}

	if got := calls("mailer", "email_marketing", 6); !slices.Equal(got, want(5, 1)) {
		t.Fatalf("mailer's first 6 calls: %v, want %v", got, want(5, 1))
	}
	err := check("mailer", "email_marketing")
	if msg := err.Error(); !strings.Contains(msg, "caller's rate limit (0.001/s, burst 5) exceeded: retry in ") {
		t.Errorf("refusal %q does not name the limit", msg)
	}
	if got := calls("crm", "sales_outreach", 20); !slices.Equal(got, want(20, 0)) {
		t.Errorf("unlimited caller beside a limited one: %v", got)
	}
	// Entitlements come first: a call the mailer may not make is refused
	// for that, and takes no token.
	if got := codeOf(check("mailer", "sales_outreach")); got != codes.PermissionDenied {
		t.Errorf("mailer outside its purposes: %v, want PermissionDenied", got)
	}
	if got := calls("mailer", "email_marketing", 50); !slices.Equal(got, want(0, 50)) {
		t.Errorf("a flood after the burst: %v", got)
	}

	// A stream costs one token to open and one a contact, which it waits
	// for; a wait its deadline cannot cover ends it.
	filter := func(contacts ...string) codes.Code {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := c["ads-agency"].Filter(ctx, "ad_retargeting", slices.Values(contacts), func(string) error { return nil })
		return codeOf(err)
	}
	if got := filter("a@example.com", "b@example.com", "c@example.com"); got != codes.OK {
		t.Errorf("a stream of 3 contacts with 5 tokens: %v, want OK", got)
	}
	if got := filter("d@example.com", "e@example.com"); got != codes.ResourceExhausted {
		t.Errorf("a stream of 2 contacts with 1 token: %v, want ResourceExhausted", got)
	}

	// 51 mailer calls refused above, plus the one whose message was read:
	// the grpc metrics count them by code.
	_, samples := promscrape.Scrape(t, d.metrics)
	if got := samples[`grpc_server_handled_total{grpc_code="ResourceExhausted",grpc_method="Check",grpc_service="consent.v1.CheckService",grpc_type="unary"}`]; got != 52 {
		t.Errorf("ResourceExhausted Checks counted: %v, want 52", got)
	}

	reloads := func() int { return strings.Count(d.logs.String(), `"msg":"policy reloaded"`) }
	reload := func(body string) {
		t.Helper()
		before := reloads()
		writePolicy(t, file, body)
		deadline := time.Now().Add(10 * time.Second)
		for reloads() == before {
			if time.Now().After(deadline) {
				t.Fatalf("policy not reloaded after 10s:\n%s", d.logs)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// The crm's entitlements change; the mailer's limit does not, so its
	// bucket stays empty.
	reload(rateLimitPolicy(5, `"sales_outreach", "market_research"`))
	if got := calls("mailer", "email_marketing", 3); !slices.Equal(got, want(0, 3)) {
		t.Errorf("after a reload that keeps the mailer's limit: %v, want %v", got, want(0, 3))
	}
	// Raised: a full bucket of the new size at once.
	reload(rateLimitPolicy(100, `"sales_outreach", "market_research"`))
	if got := calls("mailer", "email_marketing", 101); !slices.Equal(got, want(100, 1)) {
		t.Errorf("after a reload raising the mailer's burst to 100: %v", got)
	}

	// The mailer's 55 refusals are one line a 10 s, with the count since
	// the last: a few at most, however slow the machine.
	logs := d.stop(t)
	for _, tc := range []struct {
		line     string
		min, max int
	}{
		{`"msg":"rate limited","caller":"mailer","rpc":"Check","limit":"0.001/s, burst 5","refused":1}`, 1, 1},
		{`"msg":"rate limited","caller":"mailer","rpc":"Check"`, 1, 3},
		{`"msg":"rate limited","caller":"ads-agency","rpc":"FilterAudience","limit":"0.001/s, burst 5","refused":1}`, 1, 1},
		{`"msg":"rate limited","caller":"crm"`, 0, 0},
	} {
		if got := strings.Count(logs, tc.line); got < tc.min || got > tc.max {
			t.Errorf("logs hold %d of %s, want %d to %d:\n%s", got, tc.line, tc.min, tc.max, logs)
		}
	}
}
