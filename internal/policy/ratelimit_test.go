package policy

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/consentd/consentd/internal/caller"
	"github.com/consentd/consentd/internal/logthrottle"
	pb "github.com/consentd/consentd/proto/consent/v1"
)

func TestParseRate(t *testing.T) {
	for _, tc := range []struct {
		name, rate string // rate: the caller's "rate" value, "" for none
		want       *Rate
		wantErr    string
	}{
		{"none", "", nil, ""},
		{"whole", `{"per_second": 50, "burst": 100}`, &Rate{50, 100}, ""},
		{"fraction", `{"per_second": 0.5, "burst": 1}`, &Rate{0.5, 1}, ""},
		{"null", `null`, nil, ""},
		{"zero rate", `{"per_second": 0, "burst": 1}`, nil, `callers.a.rate: per_second: want a number of calls a second above 0`},
		{"negative rate", `{"per_second": -1, "burst": 1}`, nil, `per_second: want`},
		{"absurd rate", `{"per_second": 1e12, "burst": 1}`, nil, `at most 1e+09`},
		{"no burst", `{"per_second": 5}`, nil, `callers.a.rate: burst: want the number of calls allowed at once, at least 1, got 0`},
		{"fractional burst", `{"per_second": 5, "burst": 1.5}`, nil, `cannot unmarshal number 1.5`},
		{"unknown field", `{"per_second": 5, "burst": 5, "per_minute": 1}`, nil, `unknown field "per_minute"`},
		{"string", `"50/s"`, nil, `cannot unmarshal string`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := `{"callers": {"a": {"rpcs": ["Check"]}}}`
			if tc.rate != "" {
				in = `{"callers": {"a": {"rpcs": ["Check"], "rate": ` + tc.rate + `}}}`
			}
			p, err := Parse([]byte(in), registry)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got *Rate
			if r, ok := p.RateOf("a"); ok {
				got = &r
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("rate (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCallers(t *testing.T) {
	p, err := Parse([]byte(`{"callers": {
		"mailer": {"rpcs": ["Check", "BatchCheck"], "purposes": ["email_marketing"], "rate": {"per_second": 50, "burst": 100}},
		"dpo-tool": {"rpcs": ["*"], "purposes": ["*"]},
		"eraser": {"rpcs": ["Erase"]}}}`), registry)
	if err != nil {
		t.Fatal(err)
	}
	want := []Caller{
		{Name: "dpo-tool", RPCs: []string{"*"}, Purposes: []string{"*"}},
		{Name: "eraser", RPCs: []string{"Erase"}},
		{Name: "mailer", RPCs: []string{"Check", "BatchCheck"}, Purposes: []string{"email_marketing"}, Rate: &Rate{50, 100}},
	}
	got := p.Callers()
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Callers() (-want +got):\n%s", diff)
	}
	// The entries are copies: changing one changes nothing in the policy.
	got[2].RPCs[0], got[2].Rate.Burst = "Erase", 1
	if diff := cmp.Diff(want, p.Callers()); diff != "" {
		t.Errorf("Callers() after changing its result (-want +got):\n%s", diff)
	}
}

func TestRateString(t *testing.T) {
	for _, tc := range []struct {
		in   Rate
		want string
	}{
		{Rate{50, 100}, "50/s, burst 100"},
		{Rate{0.5, 1}, "0.5/s, burst 1"},
		{Rate{1e6, 10}, "1000000/s, burst 10"},
	} {
		if got := tc.in.String(); got != tc.want {
			t.Errorf("%#v.String() = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// testGuard is a Guard enforcing policy text, logging into the returned
// buffer.
func testGuard(t *testing.T, text string) (*Guard, *bytes.Buffer) {
	t.Helper()
	p, err := Parse([]byte(text), registry)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	g := &Guard{purposes: registry, log: slog.New(slog.NewTextHandler(&logs, nil)), quiet: logthrottle.New(logthrottle.Every)}
	g.current.Store(enforce(p, nil))
	return g, &logs
}

// A rate this slow never refills a token while a test runs: the tests
// count tokens, never time.
const slow = `{"per_second": 0.0001, "burst": 5}`

func TestAdmitCosts(t *testing.T) {
	contacts := func(n int) []string { return make([]string, n) }
	for _, tc := range []struct {
		name  string
		calls []any // requests, in order; nil: a stream's opening
		want  []codes.Code
	}{
		{"one token a call", []any{&pb.CheckRequest{}, &pb.CheckRequest{}, &pb.GrantRequest{}, &pb.CheckRequest{}, nil, &pb.CheckRequest{}},
			[]codes.Code{codes.OK, codes.OK, codes.OK, codes.OK, codes.OK, codes.ResourceExhausted}},
		{"a batch costs its contacts", []any{&pb.BatchCheckRequest{Contacts: contacts(3)}, &pb.BatchCheckRequest{Contacts: contacts(3)}, &pb.BatchCheckRequest{Contacts: contacts(2)}},
			[]codes.Code{codes.OK, codes.ResourceExhausted, codes.OK}},
		{"an empty batch costs one", []any{&pb.BatchCheckRequest{}, &pb.BatchCheckRequest{Contacts: contacts(4)}, &pb.CheckRequest{}},
			[]codes.Code{codes.OK, codes.OK, codes.ResourceExhausted}},
		{"a batch over the burst is refused and costs nothing", []any{&pb.BatchCheckRequest{Contacts: contacts(1000)}, &pb.CheckRequest{}},
			[]codes.Code{codes.ResourceExhausted, codes.OK}},
		{"a write batch costs its writes", []any{&pb.WriteBatchRequest{Writes: make([]*pb.BatchWrite, 4)}, &pb.CheckRequest{}, &pb.CheckRequest{}},
			[]codes.Code{codes.OK, codes.OK, codes.ResourceExhausted}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, _ := testGuard(t, `{"callers": {"mailer": {"rpcs": ["*"], "purposes": ["*"], "rate": `+slow+`}}}`)
			ctx := caller.NewContext(context.Background(), "mailer")
			var got []codes.Code
			for _, req := range tc.calls {
				got = append(got, status.Code(g.admit(ctx, "Check", req)))
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("codes (-want +got):\n%s", diff)
			}
		})
	}
}

// TestAdmitStatus: the refusal names the limit and says when to retry; it
// is logged once however many calls are refused.
func TestAdmitStatus(t *testing.T) {
	g, logs := testGuard(t, `{"callers": {
		"mailer": {"rpcs": ["Check"], "purposes": ["*"], "rate": {"per_second": 2, "burst": 1}},
		"crm": {"rpcs": ["Check"], "purposes": ["*"]}}}`)
	mailer := caller.NewContext(context.Background(), "mailer")
	if err := g.admit(mailer, "Check", &pb.CheckRequest{}); err != nil {
		t.Fatal(err)
	}
	var err error
	for range 1000 {
		if err = g.admit(mailer, "Check", &pb.CheckRequest{}); err == nil {
			break // a token came back: the machine is slow; the log still counts
		}
	}
	st := status.Convert(err)
	if st.Code() != codes.ResourceExhausted || !strings.HasPrefix(st.Message(), "caller's rate limit (2/s, burst 1) exceeded: retry in ") {
		t.Errorf("status %v %q, want ResourceExhausted naming the limit", st.Code(), st.Message())
	}
	hint, err := time.ParseDuration(strings.TrimPrefix(st.Message(), "caller's rate limit (2/s, burst 1) exceeded: retry in "))
	if err != nil || hint <= 0 || hint > 500*time.Millisecond {
		t.Errorf("retry hint %v (%v), want within (0, 500ms] for 2/s", hint, err)
	}
	if n := strings.Count(logs.String(), `msg="rate limited"`); n != 1 {
		t.Errorf("%d log lines for a flood of refusals, want 1:\n%s", n, logs)
	}
	if want := `msg="rate limited" caller=mailer rpc=Check limit="2/s, burst 1" refused=1`; !strings.Contains(logs.String(), want) {
		t.Errorf("logs lack %s:\n%s", want, logs)
	}
	// A caller without a rate is never limited.
	crm := caller.NewContext(context.Background(), "crm")
	for i := range 1000 {
		if err := g.admit(crm, "Check", &pb.CheckRequest{}); err != nil {
			t.Fatalf("unlimited caller, call %d: %v", i, err)
		}
	}
}

func TestRetryHint(t *testing.T) {
	for _, tc := range []struct {
		seconds float64
		want    string
	}{
		{0.2, "retry in 200ms"},
		{0.0001, "retry in 1ms"},
		{-1, "retry in 1ms"},
		{0.0125, "retry in 13ms"},
		{90, "retry in 1m30s"},
		{1e12, "retry in 24h0m0s"},
	} {
		got := status.Convert(errRateLimited(Rate{5, 5}, tc.seconds)).Message()
		if want := "caller's rate limit (5/s, burst 5) exceeded: " + tc.want; got != want {
			t.Errorf("errRateLimited(%v) = %q, want %q", tc.seconds, got, want)
		}
	}
}

// TestEnforceKeepsBuckets: a reload keeps the bucket of a caller whose rate
// is unchanged, gives a changed rate a full new bucket, and drops the bucket
// of a caller no longer limited or named.
func TestEnforceKeepsBuckets(t *testing.T) {
	g, _ := testGuard(t, `{"callers": {
		"same": {"rpcs": ["Check"], "rate": `+slow+`},
		"raised": {"rpcs": ["Check"], "rate": `+slow+`},
		"unlimited": {"rpcs": ["Check"], "rate": `+slow+`},
		"revoked": {"rpcs": ["Check"], "rate": `+slow+`}}}`)
	calls := func(name string, n int) (ok int) {
		ctx := caller.NewContext(context.Background(), name)
		for range n {
			if g.admit(ctx, "Check", &pb.CheckRequest{}) == nil {
				ok++
			}
		}
		return ok
	}
	for _, c := range []string{"same", "raised", "unlimited", "revoked"} {
		if got := calls(c, 10); got != 5 {
			t.Fatalf("%s before the reload: %d of 10 calls passed, want the burst, 5", c, got)
		}
	}
	p, err := Parse([]byte(`{"callers": {
		"same": {"rpcs": ["Check"], "rate": `+slow+`},
		"raised": {"rpcs": ["Check"], "rate": {"per_second": 0.0001, "burst": 20}},
		"unlimited": {"rpcs": ["Check"]}}}`), registry)
	if err != nil {
		t.Fatal(err)
	}
	g.current.Store(enforce(p, g.current.Load()))
	got := map[string]int{}
	for _, c := range []string{"same", "raised", "unlimited", "revoked"} {
		got[c] = calls(c, 30)
	}
	want := map[string]int{
		"same":      0,  // still empty: a reload refills nothing
		"raised":    20, // a full bucket of the new size
		"unlimited": 30,
		"revoked":   30, // no bucket; the entitlement check refuses it
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("calls passed after the reload (-want +got):\n%s", diff)
	}
	if _, ok := g.current.Load().bucket("revoked"); ok {
		t.Error("a caller the policy no longer names kept its bucket")
	}
}

// TestPace: a stream's contacts wait for tokens; a wait its deadline cannot
// cover ends it with RESOURCE_EXHAUSTED, a cancelled one with CANCELED.
func TestPace(t *testing.T) {
	g, _ := testGuard(t, `{"callers": {"ads": {"rpcs": ["*"], "purposes": ["*"], "rate": `+slow+`}}}`)
	ctx := caller.NewContext(context.Background(), "ads")
	if err := g.pace(ctx, "FilterAudience", 3); err != nil {
		t.Fatalf("3 contacts of a full bucket of 5: %v", err)
	}
	short, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cancelled, cancel2 := context.WithCancel(ctx)
	cancel2()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		n    int
		want codes.Code
	}{
		{"more than the deadline allows", short, 3, codes.ResourceExhausted},
		{"cancelled", cancelled, 3, codes.Canceled},
		{"no contacts", short, 0, codes.OK},
		{"unlimited caller", caller.NewContext(short, "crm"), 1 << 20, codes.OK},
	} {
		if got := status.Code(g.pace(tc.ctx, "FilterAudience", tc.n)); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestAllowsWriteBatch: a write batch is held to the purposes of each of
// its writes, a withdrawal of every purpose needing them all.
func TestAllowsWriteBatch(t *testing.T) {
	g, _ := testGuard(t, `{"callers": {"importer": {"rpcs": ["WriteBatch"], "purposes": ["email_marketing"]},
		"dpo": {"rpcs": ["*"], "purposes": ["*"]}}}`)
	grant := func(purposes ...string) *pb.BatchWrite {
		return &pb.BatchWrite{Write: &pb.BatchWrite_Grant{Grant: &pb.GrantRequest{Purposes: purposes}}}
	}
	withdraw := func(purposes ...string) *pb.BatchWrite {
		return &pb.BatchWrite{Write: &pb.BatchWrite_Withdraw{Withdraw: &pb.WithdrawRequest{Purposes: purposes}}}
	}
	for _, tc := range []struct {
		name   string
		caller string
		writes []*pb.BatchWrite
		want   codes.Code
	}{
		{"entitled purposes", "importer", []*pb.BatchWrite{grant("email_marketing"), withdraw("email_marketing")}, codes.OK},
		{"one grant outside", "importer", []*pb.BatchWrite{grant("email_marketing"), grant("email_marketing", "ad_retargeting")}, codes.PermissionDenied},
		{"a withdrawal of every purpose", "importer", []*pb.BatchWrite{withdraw()}, codes.PermissionDenied},
		{"everything allowed", "dpo", []*pb.BatchWrite{grant("ad_retargeting"), withdraw()}, codes.OK},
		{"RPC not allowed", "nobody", []*pb.BatchWrite{grant("email_marketing")}, codes.PermissionDenied},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := caller.NewContext(context.Background(), tc.caller)
			if got := status.Code(g.allows(ctx, "WriteBatch", &pb.WriteBatchRequest{Writes: tc.writes})); got != tc.want {
				t.Errorf("allows = %v, want %v", got, tc.want)
			}
		})
	}
}
