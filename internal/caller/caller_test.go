package caller

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"log/slog"
	"net/url"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

func hash(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

func TestParseTokens(t *testing.T) {
	file := "# callers\n\nmailer " + hash("tok-a") + "\n  mailer " + hash("tok-a2") + "  # rotated\n"
	// A trailing comment is a third field: refused, see below.
	if _, err := ParseBearerTokens(strings.NewReader(file)); err == nil || !strings.HasPrefix(err.Error(), "4: ") {
		t.Errorf("trailing comment: err = %v, want a line-4 error", err)
	}
	tokens, err := ParseBearerTokens(strings.NewReader("# callers\n\nmailer " + hash("tok-a") + "\nmailer " + hash("tok-a2") + "\ncrm " + hash("tok-b") + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		token, want string
		ok          bool
	}{
		{"tok-a", "mailer", true}, {"tok-a2", "mailer", true}, {"tok-b", "crm", true},
		{"tok-c", "", false}, {"", "", false}, {hash("tok-a"), "", false},
	} {
		if got, ok := tokens.Lookup(tc.token); got != tc.want || ok != tc.ok {
			t.Errorf("Lookup(%q) = %q, %v; want %q, %v", tc.token, got, ok, tc.want, tc.ok)
		}
	}

	for _, tc := range []struct{ name, file, want string }{
		{"one field", "mailer\n", `1: want NAME SHA256HEX, got 1 fields`},
		{"not hex", "# x\nmailer zz\n", `2: caller "mailer": want the token's SHA-256 as 64 hex digits`},
		{"short hash", "mailer abcd\n", `1: caller "mailer": want the token's SHA-256`},
		{"duplicate hash", "a " + hash("t") + "\nb " + hash("t") + "\n", `2: caller "b": the same token hash as line 1`},
		{"empty", "# nothing\n", "1: no tokens"},
	} {
		if _, err := ParseBearerTokens(strings.NewReader(tc.file)); err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestCertName(t *testing.T) {
	spiffe, _ := url.Parse("spiffe://example.org/ns/mail/sa/sender")
	web, _ := url.Parse("https://example.org/")
	for _, tc := range []struct {
		name string
		cert *x509.Certificate
		want string
		ok   bool
	}{
		{"SPIFFE wins over CN", &x509.Certificate{Subject: pkix.Name{CommonName: "cn"}, URIs: []*url.URL{web, spiffe}}, spiffe.String(), true},
		{"CN without SPIFFE", &x509.Certificate{Subject: pkix.Name{CommonName: "crm"}, URIs: []*url.URL{web}}, "crm", true},
		{"nothing", &x509.Certificate{}, "", false},
	} {
		if got, ok := CertName(tc.cert); got != tc.want || ok != tc.ok {
			t.Errorf("%s: CertName = %q, %v; want %q, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

func TestAuthenticateTokens(t *testing.T) {
	tokens, err := ParseBearerTokens(strings.NewReader("mailer " + hash("tok") + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	a := New(Config{Tokens: tokens})
	for _, tc := range []struct {
		name, method string
		md           metadata.MD
		want         codes.Code
		caller       string
	}{
		{"no metadata", "/consent.v1.CheckService/Check", nil, codes.Unauthenticated, ""},
		{"right token", "/consent.v1.CheckService/Check", metadata.Pairs("authorization", "Bearer tok"), codes.OK, "mailer"},
		{"scheme is case-insensitive", "/consent.v1.CheckService/Check", metadata.Pairs("authorization", "bearer tok"), codes.OK, "mailer"},
		{"wrong token", "/consent.v1.CheckService/Check", metadata.Pairs("authorization", "Bearer nope"), codes.Unauthenticated, ""},
		{"basic auth", "/consent.v1.CheckService/Check", metadata.Pairs("authorization", "Basic dG9r"), codes.Unauthenticated, ""},
		{"two headers", "/consent.v1.CheckService/Check", metadata.Pairs("authorization", "Bearer tok", "authorization", "Bearer tok"), codes.Unauthenticated, ""},
		{"health is open", "/grpc.health.v1.Health/Check", nil, codes.OK, ""},
	} {
		ctx := context.Background()
		if tc.md != nil {
			ctx = metadata.NewIncomingContext(ctx, tc.md)
		}
		ctx, err := a.Authenticate(ctx, tc.method)
		if got := status.Code(err); got != tc.want {
			t.Errorf("%s: code %v, want %v", tc.name, got, tc.want)
		}
		if got, _ := FromContext(ctx); got != tc.caller {
			t.Errorf("%s: caller %q, want %q", tc.name, got, tc.caller)
		}
	}
}

// TestRefusalLogThrottled: a flood of refused calls is one line a while per
// method and reason, not one a call; another reason is a line of its own.
func TestRefusalLogThrottled(t *testing.T) {
	tokens, err := ParseBearerTokens(strings.NewReader("mailer " + hash("tok") + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	a := New(Config{Tokens: tokens, Log: slog.New(slog.NewTextHandler(&logs, nil))})
	wrong := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer nope"))
	for range 1000 {
		if _, err := a.Authenticate(wrong, "/consent.v1.CheckService/Check"); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("wrong token: %v", err)
		}
	}
	if _, err := a.Authenticate(context.Background(), "/consent.v1.CheckService/Check"); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("no token: %v", err)
	}
	want := []string{`reason="unknown bearer token"`, `reason="no bearer token"`}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != len(want) {
		t.Fatalf("%d lines for 1,001 refusals, want %d:\n%s", len(lines), len(want), logs.String())
	}
	for i, w := range want {
		if !strings.Contains(lines[i], `msg="unauthenticated call"`) || !strings.Contains(lines[i], w) {
			t.Errorf("line %d: %s, want the refusal with %s", i, lines[i], w)
		}
	}
}
