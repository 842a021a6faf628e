package daemon

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/consentd/consentd/client"
	"github.com/consentd/consentd/internal/tokensfile"
	pb "github.com/consentd/consentd/proto/consent/v1"
)

// writePolicy writes a policy file atomically (a rename), as an operator's
// deploy tool would, so the poller never reads half a file.
func writePolicy(t *testing.T, path, body string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

const testPolicy = `{"callers": {
	"ads-agency": {"rpcs": ["FilterAudience", "BatchCheck", "Check"], "purposes": ["ad_retargeting"]},
	"mailer": {"rpcs": ["Check"], "purposes": ["email_marketing"]},
	"crm": {"rpcs": ["Check", "Withdraw"], "purposes": ["sales_outreach"]},
	"dpo-tool": {"rpcs": ["*"], "purposes": ["*"]}
}}`

// codeOf is the gRPC code of a client call's error.
func codeOf(err error) codes.Code {
	var ce *client.Error
	switch {
	case err == nil:
		return codes.OK
	case errors.As(err, &ce):
		return ce.Code
	}
	return codes.Unknown
}

func policyDaemon(t *testing.T) (d *daemon, policyFile string, callers map[string]*client.Client) {
	t.Helper()
	tokens := map[string]string{"ads-agency": "ads-token", "mailer": "mail-token", "crm": "crm-token", "dpo-tool": "dpo-token", "stranger": "stranger-token"}
	policyFile = filepath.Join(t.TempDir(), "policy.json")
	writePolicy(t, policyFile, testPolicy)
	cfg := testConfig(t)
	cfg.LogLevel, cfg.TokensFile, cfg.PolicyFile = slog.LevelDebug, tokensfile.Write(t, tokens), policyFile
	d = startDaemon(t, cfg)
	callers = map[string]*client.Client{}
	for name, token := range tokens {
		c, err := client.New(d.addr, client.WithBearerToken(token), client.WithTimeout(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		callers[name] = c
	}
	return d, policyFile, callers
}

// TestPolicyEntitlements: each caller may use only the RPCs and purposes
// of --policy; everything else is PERMISSION_DENIED and logged with
// caller, RPC and purpose, never the contact.
func TestPolicyEntitlements(t *testing.T) {
	d, _, c := policyDaemon(t)
	ctx := context.Background()
	filter := func(cl *client.Client, purpose string) error {
		_, err := cl.Filter(ctx, purpose, slices.Values([]string{contactGranted}), func(string) error { return nil })
		return err
	}
	for _, tc := range []struct {
		name string
		call func() error
		want codes.Code
	}{
		{"Check on an entitled purpose", func() error { _, err := c["mailer"].Check(ctx, contactGranted, "email_marketing"); return err }, codes.OK},
		{"Check outside the caller's purposes", func() error { _, err := c["ads-agency"].Check(ctx, contactGranted, "email_marketing"); return err }, codes.PermissionDenied},
		{"BatchCheck on an entitled purpose", func() error {
			_, err := c["ads-agency"].BatchCheck(ctx, "ad_retargeting", []string{contactGranted})
			return err
		}, codes.OK},
		{"RPC outside the caller's list", func() error {
			_, err := c["ads-agency"].Grant(ctx, &pb.GrantRequest{Contact: contactGranted, Purposes: []string{"ad_retargeting"}})
			return err
		}, codes.PermissionDenied},
		{"FilterAudience on an entitled purpose", func() error { return filter(c["ads-agency"], "ad_retargeting") }, codes.OK},
		{"FilterAudience outside the caller's purposes", func() error { return filter(c["ads-agency"], "email_marketing") }, codes.PermissionDenied},
		{"Withdraw of all purposes by a caller limited to one", func() error {
			_, err := c["crm"].Withdraw(ctx, &pb.WithdrawRequest{Contact: contactGranted})
			return err
		}, codes.PermissionDenied},
		{"caller not in the policy", func() error { _, err := c["stranger"].Check(ctx, contactGranted, "email_marketing"); return err }, codes.PermissionDenied},
		{"Erase without a purpose: RPC entitlement only", func() error {
			_, err := c["mailer"].Erase(ctx, &pb.EraseRequest{Contact: contactGranted, Actor: "dpo", RequestId: "r1"})
			return err
		}, codes.PermissionDenied},
		{"wildcard caller", func() error { _, err := c["dpo-tool"].GetContact(ctx, contactGranted); return err }, codes.OK},
		{"health stays open", func() error { return c["stranger"].Health(ctx) }, codes.OK},
	} {
		if got := codeOf(tc.call()); got != tc.want {
			t.Errorf("%s: code %v, want %v", tc.name, got, tc.want)
		}
	}

	logs := d.stop(t)
	for _, want := range []string{
		`"msg":"permission denied","caller":"ads-agency","rpc":"Check","purpose":"email_marketing"`,
		`"msg":"permission denied","caller":"ads-agency","rpc":"Grant","purpose":"ad_retargeting"`,
		`"msg":"permission denied","caller":"ads-agency","rpc":"FilterAudience","purpose":"email_marketing"`,
		`"msg":"permission denied","caller":"crm","rpc":"Withdraw","purpose":"*"`,
		`"policy_callers":4`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %s:\n%s", want, logs)
		}
	}
	if strings.Contains(strings.ToLower(logs), strings.ToLower(contactGranted)) {
		t.Errorf("logs contain the contact:\n%s", logs)
	}
}

// TestPolicyReload: rewriting the file revokes access mid-traffic without a
// restart; a broken file is refused with a log line and the previous
// policy stays in force.
func TestPolicyReload(t *testing.T) {
	d, file, c := policyDaemon(t)
	ctx := context.Background()
	check := func() codes.Code {
		_, err := c["mailer"].Check(ctx, contactGranted, "email_marketing")
		return codeOf(err)
	}
	if got := check(); got != codes.OK {
		t.Fatalf("before reload: %v, want OK", got)
	}

	// Traffic keeps flowing while the mailer loses email_marketing.
	writePolicy(t, file, strings.Replace(testPolicy, `"purposes": ["email_marketing"]`, `"purposes": ["sales_outreach"]`, 1))
	deadline := time.Now().Add(10 * time.Second)
	for check() == codes.OK {
		if time.Now().After(deadline) {
			t.Fatalf("access not revoked after 10s:\n%s", d.logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for i := range 20 {
		if got := check(); got != codes.PermissionDenied {
			t.Fatalf("call %d after revocation: %v, want PermissionDenied", i, got)
		}
	}
	if !strings.Contains(d.logs.String(), `"msg":"policy reloaded"`) {
		t.Errorf("no reload log line:\n%s", d.logs)
	}

	// A broken file is refused; the revoked policy stays.
	writePolicy(t, file, `{"callers": {"mailer": {"rpcs": ["Check", "Chek"], "purposes": ["*"]}}}`)
	deadline = time.Now().Add(10 * time.Second)
	for !strings.Contains(d.logs.String(), "policy reload refused") {
		if time.Now().After(deadline) {
			t.Fatalf("broken policy not refused after 10s:\n%s", d.logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := check(); got != codes.PermissionDenied {
		t.Errorf("after a broken file: %v, want PermissionDenied (the previous policy)", got)
	}
	if _, err := c["ads-agency"].BatchCheck(ctx, "ad_retargeting", []string{contactGranted}); err != nil {
		t.Errorf("after a broken file, an entitled call: %v", err)
	}
	if logs := d.stop(t); !strings.Contains(logs, `unknown RPC \"Chek\"`) {
		t.Errorf("refusal does not name the problem:\n%s", logs)
	}
}

// TestPolicyRefusedAtStart: a broken policy file, or a policy without
// caller identity, stops consentd with exit 2 naming the problem.
func TestPolicyRefusedAtStart(t *testing.T) {
	dir := t.TempDir()
	tokens := tokensfile.Write(t, map[string]string{"mailer": "t"})
	file := func(name, body string) string {
		p := filepath.Join(dir, name)
		writePolicy(t, p, body)
		return p
	}
	for _, tc := range []struct {
		name   string
		tokens string
		policy string
		want   string
	}{
		{"without identity", "", file("ok.json", `{"callers": {}}`), "--policy: needs caller identity (--tokens or --client-ca)"},
		{"unknown RPC", tokens, file("rpc.json", `{"callers": {"a": {"rpcs": ["Delete"]}}}`), `callers.a.rpcs: unknown RPC "Delete"`},
		{"unknown purpose", tokens, file("p.json", `{"callers": {"a": {"purposes": ["spam"]}}}`), `callers.a.purposes: unknown purpose "spam"`},
		{"unknown field", tokens, file("f.json", `{"callers": {"a": {"rpcs": []}}, "version": 2}`), `unknown field "version"`},
		{"missing file", tokens, filepath.Join(dir, "nope.json"), "--policy: stat " + filepath.Join(dir, "nope.json")},
	} {
		var out bytes.Buffer
		cfg := testConfig(t)
		cfg.TokensFile, cfg.PolicyFile = tc.tokens, tc.policy
		if code := Run(context.Background(), cfg, &out); code != 2 || !strings.Contains(out.String(), tc.want) {
			t.Errorf("%s: exit %d, output %q; want 2 and %q", tc.name, code, out.String(), tc.want)
		}
	}
}
