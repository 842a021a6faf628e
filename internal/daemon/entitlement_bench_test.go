package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/consentd/consentd/cache"
	"github.com/consentd/consentd/consent"
	"github.com/consentd/consentd/internal/caller"
	"github.com/consentd/consentd/internal/chain"
	"github.com/consentd/consentd/internal/consistencytoken"
	"github.com/consentd/consentd/internal/contactkey"
	"github.com/consentd/consentd/internal/tokensfile"
	pb "github.com/consentd/consentd/proto/consent/v1"
	"github.com/consentd/consentd/server"
)

// benchCallers is how many callers the tokens and policy files of the
// entitlement benchmarks name: a lookup among many, as in a deployment with
// many senders, not a one-entry map.
const benchCallers = 100

// entitlementStack is consentd's gRPC stack over bufconn, its interceptors
// wired as serve wires them, for benchmarks of what identity and
// entitlements add to a warm Check.
type entitlementStack struct {
	check   pb.CheckServiceClient
	records *cache.Cache
	auth    string // the authorization metadata the load sends; "" for none
}

// outgoing is ctx with the stack's authorization metadata, made once per
// benchmark: the client's per-call credentials are not what is measured.
func (s *entitlementStack) outgoing(ctx context.Context) context.Context {
	if s.auth == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", s.auth)
}

// startEntitlementStack runs the stack on the embedded store with a cache,
// grants the benchmark's contact and warms the cache. With tokens, calls
// must carry a bearer token; with policy too, each caller is limited to its
// RPCs and purposes (the benchmark's caller to Check and BatchCheck on
// email_marketing).
func startEntitlementStack(b *testing.B, tokens, withPolicy bool) *entitlementStack {
	b.Helper()
	dir := b.TempDir()
	purposes, err := consent.NewRegistry(consent.DefaultPurposes())
	if err != nil {
		b.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	sec, callers := benchSecurity(b, dir, purposes, log, tokens, withPolicy)

	secret, err := contactkey.LoadOrCreateSecret(filepath.Join(dir, "secret"))
	if err != nil {
		b.Fatal(err)
	}
	keys, err := contactkey.New(secret)
	if err != nil {
		b.Fatal(err)
	}
	history, err := chain.NewKey(secret)
	if err != nil {
		b.Fatal(err)
	}
	// The store and cache as serve opens them, so the benchmark follows
	// any change to how they are wired.
	st, err := openStore(context.Background(), Config{DataDir: filepath.Join(dir, "data"), CacheBytes: 16 << 20}, keys.Check(), history, log)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	records := st.records

	// The interceptors in serve's order: identity and entitlements first,
	// then recovery and logging.
	calls := server.NewCallLog(log)
	srv := grpc.NewServer(append(sec.serverOptions(log, server.DecodeOptions(calls)), server.ServerOptions(calls)...)...)
	issuer, err := consistencytoken.NewIssuer(secret, st.backend.StoreID())
	if err != nil {
		b.Fatal(err)
	}
	server.New(server.Config{Keys: keys, Records: records, Store: st.backend, Purposes: purposes, ConsistencyTokens: issuer}).Register(srv)
	lis := bufconn.Listen(1 << 20)
	served := make(chan struct{})
	go func() { srv.Serve(lis); close(served) }()
	b.Cleanup(func() { srv.Stop(); <-served })
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })

	// Tokens travel as client.WithBearerToken sends them, as metadata set
	// here because the client sends a token only to a target it knows is
	// local, and a bufconn name is not one it recognises.
	s := &entitlementStack{check: pb.NewCheckServiceClient(conn), records: records}
	admin := &entitlementStack{}
	if tokens {
		s.auth, admin.auth = "Bearer "+callers["sender-042"], "Bearer "+callers["admin"]
	}
	if _, err := pb.NewConsentServiceClient(conn).Grant(admin.outgoing(context.Background()), &pb.GrantRequest{Contact: benchContact,
		Purposes: []string{"email_marketing"}, Method: pb.Method_METHOD_CHECKBOX, RequestId: "bench-grant"}); err != nil {
		b.Fatal(err)
	}
	ctx := s.outgoing(context.Background())
	if withPolicy {
		// The policy is in the path: a purpose the caller lacks is denied.
		_, err := s.check.Check(ctx, &pb.CheckRequest{Contact: benchContact, Purpose: "sales_outreach"})
		if got := status.Code(err); got != codes.PermissionDenied {
			b.Fatalf("Check outside the caller's purposes: %v (%v), want PermissionDenied", got, err)
		}
	}
	for range 100 { // warm the cache (ristretto admits asynchronously)
		s.checkAllowed(ctx, b)
	}
	return s
}

const benchContact = "bench@example.com"

// benchSecurity writes a tokens file naming benchCallers senders and an
// admin when tokens is set, and a policy file for them when withPolicy is
// too, and loads them as run does. It returns the security they make and
// each caller's token.
func benchSecurity(b *testing.B, dir string, purposes *consent.Registry, log *slog.Logger, tokens, withPolicy bool) (security, map[string]string) {
	b.Helper()
	var sec security
	callers := map[string]string{"admin": "bench-admin-token"}
	for i := range benchCallers {
		callers[fmt.Sprintf("sender-%03d", i)] = fmt.Sprintf("bench-token-%03d", i)
	}
	if !tokens {
		return sec, callers
	}
	var err error
	if sec, err = loadSecurity(Config{TokensFile: tokensfile.Write(b, callers)}); err != nil {
		b.Fatal(err)
	}
	if !withPolicy {
		return sec, callers
	}
	var p strings.Builder
	p.WriteString(`{"callers": {"admin": {"rpcs": ["*"], "purposes": ["*"]}`)
	for i := range benchCallers {
		// Every other caller has another purpose, so the policy is not
		// one answer for all.
		purpose := "email_marketing"
		if i%2 == 1 {
			purpose = "ad_retargeting"
		}
		fmt.Fprintf(&p, `, "sender-%03d": {"rpcs": ["Check", "BatchCheck"], "purposes": [%q]}`, i, purpose)
	}
	p.WriteString(`}}`)
	file := filepath.Join(dir, "policy.json")
	writeBenchFile(b, file, p.String())
	if sec.policy, err = loadPolicy(file, purposes, log); err != nil {
		b.Fatal(err)
	}
	return sec, callers
}

// checkAllowed makes one Check, which must be answered ALLOW.
func (s *entitlementStack) checkAllowed(ctx context.Context, b *testing.B) {
	resp, err := s.check.Check(ctx, &pb.CheckRequest{Contact: benchContact, Purpose: "email_marketing"})
	if err != nil || resp.GetDecision() != pb.Decision_DECISION_ALLOW {
		b.Fatalf("Check: %v %v", resp, err)
	}
}

func writeBenchFile(b *testing.B, path, body string) {
	b.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		b.Fatal(err)
	}
}

// benchmarkCheck measures a warm Check through the stack, every one a cache
// hit.
func benchmarkCheck(b *testing.B, tokens, policy bool) {
	s := startEntitlementStack(b, tokens, policy)
	ctx := s.outgoing(context.Background())
	hits := s.records.Stats().Hits.Load()
	b.ReportAllocs()
	for b.Loop() {
		s.checkAllowed(ctx, b)
	}
	if got := s.records.Stats().Hits.Load() - hits; got < uint64(b.N) {
		b.Fatalf("%d of %d checks hit the cache", got, b.N)
	}
}

// BenchmarkCheckWithoutPolicy is a warm Check as consentd serves it without
// caller identity: the baseline of the two below.
func BenchmarkCheckWithoutPolicy(b *testing.B) { benchmarkCheck(b, false, false) }

// BenchmarkCheckWithTokens adds bearer-token identity (--tokens): the
// token's hash looked up among 101 callers.
func BenchmarkCheckWithTokens(b *testing.B) { benchmarkCheck(b, true, false) }

// BenchmarkCheckWithPolicy adds entitlements (--tokens and --policy): the
// caller's RPC and purpose checked before the handler runs. Its difference
// from BenchmarkCheckWithTokens is the policy interceptor's cost; from
// BenchmarkCheckWithoutPolicy, identity's and entitlements' together.
func BenchmarkCheckWithPolicy(b *testing.B) { benchmarkCheck(b, true, true) }

// BenchmarkEntitlementInterceptors times the interceptors alone, without
// gRPC around them: what each adds to a Check's server CPU, in ns rather
// than in the noise of a whole call. The handler does nothing.
func BenchmarkEntitlementInterceptors(b *testing.B) {
	purposes, err := consent.NewRegistry(consent.DefaultPurposes())
	if err != nil {
		b.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	sec, callers := benchSecurity(b, b.TempDir(), purposes, log, true, true)
	tokens := caller.New(caller.Config{Tokens: sec.tokens, Log: log}).UnaryInterceptor()
	guard := sec.policy.UnaryInterceptor()
	req := &pb.CheckRequest{Contact: benchContact, Purpose: "email_marketing"}
	info := &grpc.UnaryServerInfo{FullMethod: pb.CheckService_Check_FullMethodName}
	done := func(context.Context, any) (any, error) { return nil, nil }
	incoming := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+callers["sender-042"]))
	identified := caller.NewContext(context.Background(), "sender-042")
	for _, bc := range []struct {
		name string
		ctx  context.Context
		call grpc.UnaryServerInterceptor
	}{
		{"identity", incoming, tokens},
		{"policy", identified, guard},
		{"both", incoming, func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			return tokens(ctx, req, info, func(ctx context.Context, req any) (any, error) { return guard(ctx, req, info, h) })
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bc.call(bc.ctx, req, info, done); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
