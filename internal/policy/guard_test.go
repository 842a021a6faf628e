package policy

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/consentd/consentd/internal/caller"
	"github.com/consentd/consentd/internal/logthrottle"
	pb "github.com/consentd/consentd/proto/consent/v1"
)

// TestGuardReload: Run reloads on a signal and on a changed file, refuses
// a broken file keeping the policy in force, and stops with its context.
func TestGuardReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.json")
	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(path+".tmp", []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".tmp", path); err != nil {
			t.Fatal(err)
		}
	}
	write(`{"callers": {"mailer": {"rpcs": ["Check"], "purposes": ["email_marketing"]}}}`)
	var mu sync.Mutex
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(writerFunc(func(b []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(b)
	}), nil))
	g, err := Load(path, registry, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	hup := make(chan os.Signal, 1)
	var wg sync.WaitGroup
	wg.Go(func() { g.Run(ctx, 10*time.Millisecond, hup) })
	defer func() { cancel(); wg.Wait() }()

	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				mu.Lock()
				defer mu.Unlock()
				t.Fatalf("%s: not after 5s:\n%s", what, logs.String())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	write(`{"callers": {"mailer": {"rpcs": ["Check"], "purposes": ["sales_outreach"]}}}`)
	waitFor("revocation on file change", func() bool { return !g.Policy().AllowPurpose("mailer", "email_marketing") })

	write(`{"callers": {"mailer": {"rpcs": ["Check"], "purposes": ["nope"]}}}`)
	waitFor("broken file refused", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return strings.Contains(logs.String(), `policy reload refused`) && strings.Contains(logs.String(), `unknown purpose \"nope\"`)
	})
	if !g.Policy().AllowPurpose("mailer", "sales_outreach") {
		t.Error("a broken file replaced the policy in force")
	}
	hup <- os.Interrupt // any signal: the daemon sends SIGHUP
	waitFor("reload on signal logged twice", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return strings.Count(logs.String(), "policy reload refused") >= 2
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

// TestDenialLog: a denial is logged with the caller, the RPC and the
// purposes the call named: a registered one by name, any other string by
// its length only (a made-up purpose may hold a contact), in the log and in
// the refusal alike; a flood of denials is one line a while, the next
// reporting how many were suppressed.
func TestDenialLog(t *testing.T) {
	g, logs := testGuard(t, `{"callers": {"mailer": {"rpcs": ["Check", "Withdraw"], "purposes": ["email_marketing"]}}}`)
	ctx := caller.NewContext(context.Background(), "mailer")
	const leak = "Leaky.Person@Example.com"
	for _, tc := range []struct {
		name    string
		rpc     string
		req     any
		wantLog string
		wantMsg string
	}{
		{"registered purpose", "Check", &pb.CheckRequest{Purpose: "ad_retargeting"},
			`msg="permission denied" caller=mailer rpc=Check purpose=ad_retargeting`, `caller not entitled to Check on purpose "ad_retargeting"`},
		{"made-up purpose", "Withdraw", &pb.WithdrawRequest{Purposes: []string{"email_marketing", leak}},
			`msg="permission denied" caller=mailer rpc=Withdraw purpose="(unregistered, 24 bytes)"`, `caller not entitled to Withdraw on purpose (unregistered, 24 bytes)`},
		{"RPC not allowed names the purposes", "Grant", &pb.GrantRequest{Purposes: []string{"sales_outreach", leak}},
			`msg="permission denied" caller=mailer rpc=Grant purpose="sales_outreach,(unregistered, 24 bytes)"`, `caller not entitled to Grant on purpose "sales_outreach",(unregistered, 24 bytes)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs.Reset()
			err := g.allows(ctx, tc.rpc, tc.req)
			if st := status.Convert(err); st.Code() != codes.PermissionDenied || st.Message() != tc.wantMsg {
				t.Errorf("refusal %v %q, want PermissionDenied %q", st.Code(), st.Message(), tc.wantMsg)
			}
			if !strings.Contains(logs.String(), tc.wantLog) {
				t.Errorf("log %q lacks %q", logs.String(), tc.wantLog)
			}
			if strings.Contains(strings.ToLower(logs.String()), "leaky") {
				t.Errorf("log holds the made-up purpose: %q", logs.String())
			}
		})
	}

	// A flood: one line an interval, each reporting the denials it stood
	// for since the one before.
	const every = 100 * time.Millisecond
	g.quiet = logthrottle.New(every)
	logs.Reset()
	start := time.Now()
	for range 1000 {
		if err := g.allows(ctx, "Check", &pb.CheckRequest{Purpose: leak}); status.Code(err) != codes.PermissionDenied {
			t.Fatalf("denial: %v", err)
		}
	}
	time.Sleep(every + every/2)
	g.allows(ctx, "Check", &pb.CheckRequest{Purpose: leak})
	elapsed := time.Since(start)
	lines, suppressed := 0, 0
	for line := range strings.Lines(logs.String()) {
		lines++
		if _, n, ok := strings.Cut(strings.TrimSpace(line), " suppressed="); ok {
			k, err := strconv.Atoi(n)
			if err != nil {
				t.Fatalf("line %q: %v", line, err)
			}
			suppressed += k
		}
	}
	t.Logf("1,001 denials in %v: %d lines, %d suppressed", elapsed, lines, suppressed)
	if lines+suppressed != 1001 {
		t.Errorf("%d lines and %d suppressed, want 1,001 in all:\n%s", lines, suppressed, logs)
	}
	if max := 1 + int(elapsed/every) + 1; lines > max || suppressed == 0 {
		t.Errorf("%d lines (%d suppressed) for 1,001 denials in %v, want at most %d and some suppressed", lines, suppressed, elapsed, max)
	}
}

// TestPersonRPCs: the RPCs of persons are entitled by name like the
// others; Rectify, which carries every purpose's consent and withdraws
// every purpose on the old identifier, also needs every purpose, as a
// withdrawal of all does; a person-wide Erase needs Erase, nothing more.
func TestPersonRPCs(t *testing.T) {
	g, _ := testGuard(t, `{"callers": {
		"dpo": {"rpcs": ["LinkIdentifiers", "UnlinkIdentifier", "Rectify", "Erase"], "purposes": ["*"]},
		"crm": {"rpcs": ["LinkIdentifiers", "Rectify"], "purposes": ["email_marketing"]},
		"eraser": {"rpcs": ["Erase"]}}}`)
	for _, tc := range []struct {
		caller, rpc string
		req         any
		want        codes.Code
	}{
		{"dpo", "LinkIdentifiers", &pb.LinkIdentifiersRequest{}, codes.OK},
		{"dpo", "UnlinkIdentifier", &pb.UnlinkIdentifierRequest{}, codes.OK},
		{"dpo", "Rectify", &pb.RectifyRequest{}, codes.OK},
		{"crm", "LinkIdentifiers", &pb.LinkIdentifiersRequest{}, codes.OK},
		{"crm", "UnlinkIdentifier", &pb.UnlinkIdentifierRequest{}, codes.PermissionDenied},
		{"crm", "Rectify", &pb.RectifyRequest{}, codes.PermissionDenied},
		{"eraser", "Erase", &pb.EraseRequest{Scope: pb.Scope_SCOPE_PERSON}, codes.OK},
		{"eraser", "Rectify", &pb.RectifyRequest{}, codes.PermissionDenied},
	} {
		ctx := caller.NewContext(context.Background(), tc.caller)
		if got := status.Code(g.allows(ctx, tc.rpc, tc.req)); got != tc.want {
			t.Errorf("%s %s: got %v, want %v", tc.caller, tc.rpc, got, tc.want)
		}
	}
}
