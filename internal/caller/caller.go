// Package caller names the caller of a gRPC call: by its verified client
// certificate (mTLS: a SPIFFE URI SAN when present, else the subject CN) or
// by a bearer token whose SHA-256 is listed in a tokens file. Its
// interceptors refuse a call without a valid identity with UNAUTHENTICATED
// (health checks stay open: probes carry no identity) and put the caller's
// name in the call's context, where FromContext reads it.
package caller

import (
	"context"
	"crypto/x509"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/consentd/consentd/internal/logthrottle"
)

type callerKey struct{}

// NewContext returns ctx carrying the caller's name.
func NewContext(ctx context.Context, caller string) context.Context {
	return context.WithValue(ctx, callerKey{}, caller)
}

// FromContext returns the caller's name NewContext put in ctx.
func FromContext(ctx context.Context) (string, bool) {
	name, ok := ctx.Value(callerKey{}).(string)
	return name, ok && name != ""
}

// openPrefix starts the methods anyone may call: health checks, since
// Kubernetes probes carry no identity.
const openPrefix = "/grpc.health.v1.Health/"

// Config says which identities an Authenticator accepts.
type Config struct {
	// Tokens, when set, accepts `authorization: Bearer <token>` metadata
	// whose token it lists.
	Tokens *BearerTokens
	// ClientCerts accepts a verified TLS client certificate (the listener
	// must require and verify them: --client-ca).
	ClientCerts bool
	// Log receives a warning per refused call: method, peer and reason,
	// never a token; at most one a while (logthrottle.Every) per method and
	// reason, with the number suppressed since the one before.
	Log *slog.Logger
}

// Authenticator names callers and refuses calls it cannot name.
type Authenticator struct {
	cfg Config
	// quiet keeps a flood of refusals to a line a while: the callers are
	// unknown, so the line's key is what was refused and why.
	quiet *logthrottle.Throttle
}

// New returns an Authenticator for cfg; with neither Tokens nor ClientCerts
// it refuses every call but health checks.
func New(cfg Config) *Authenticator {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Authenticator{cfg: cfg, quiet: logthrottle.New(logthrottle.Every)}
}

// errUnauthenticated is all a refused caller learns; the reason is logged.
var errUnauthenticated = status.Error(codes.Unauthenticated, "no valid caller identity: send a client certificate or an authorization: Bearer token")

// Authenticate returns ctx with the caller's name (FromContext), or
// UNAUTHENTICATED. A bearer token, when sent, must be valid and names the
// caller; without one, a verified client certificate does.
func (a *Authenticator) Authenticate(ctx context.Context, method string) (context.Context, error) {
	if strings.HasPrefix(method, openPrefix) {
		return ctx, nil
	}
	name, reason := a.identify(ctx)
	if reason != "" {
		if n, ok := a.quiet.Allow(method+"\x00"+reason, time.Now()); ok {
			attrs := []any{"method", method, "reason", reason}
			if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
				attrs = append(attrs, "peer", p.Addr.String())
			}
			if n > 0 {
				attrs = append(attrs, "suppressed", n)
			}
			a.cfg.Log.WarnContext(ctx, "unauthenticated call", attrs...)
		}
		return ctx, errUnauthenticated
	}
	return NewContext(ctx, name), nil
}

// identify returns the caller's name, or why there is none.
func (a *Authenticator) identify(ctx context.Context) (name, reason string) {
	token, sent, reason := bearer(ctx)
	if reason != "" {
		return "", reason
	}
	if sent {
		if a.cfg.Tokens == nil {
			return "", "bearer token sent but no --tokens configured"
		}
		if name, ok := a.cfg.Tokens.Lookup(token); ok {
			return name, ""
		}
		return "", "unknown bearer token"
	}
	if a.cfg.ClientCerts {
		if cert := peerCert(ctx); cert != nil {
			if name, ok := CertName(cert); ok {
				return name, ""
			}
			return "", "client certificate has neither a SPIFFE URI SAN nor a subject CN"
		}
		if a.cfg.Tokens == nil {
			return "", "no verified client certificate"
		}
	}
	return "", "no bearer token"
}

// bearer reads the token of `authorization: Bearer <token>` metadata.
func bearer(ctx context.Context) (token string, sent bool, reason string) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	switch {
	case len(vals) == 0:
		return "", false, ""
	case len(vals) > 1:
		return "", true, "more than one authorization header"
	}
	scheme, token, ok := strings.Cut(vals[0], " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return "", true, "authorization header is not Bearer <token>"
	}
	return token, true, ""
}

// peerCert returns the verified leaf certificate of the call's peer.
func peerCert(ctx context.Context) *x509.Certificate {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return nil
	}
	return info.State.VerifiedChains[0][0]
}

// CertName names the holder of cert: its first spiffe:// URI SAN, else its
// subject CN.
func CertName(cert *x509.Certificate) (string, bool) {
	for _, u := range cert.URIs {
		if strings.EqualFold(u.Scheme, "spiffe") {
			return u.String(), true
		}
	}
	return cert.Subject.CommonName, cert.Subject.CommonName != ""
}

// UnaryInterceptor authenticates unary calls.
func (a *Authenticator) UnaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		ctx, err := a.Authenticate(ctx, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return h(ctx, req)
	}
}

// StreamInterceptor authenticates streams.
func (a *Authenticator) StreamInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		ctx, err := a.Authenticate(ss.Context(), info.FullMethod)
		if err != nil {
			return err
		}
		return h(srv, &stream{ServerStream: ss, ctx: ctx})
	}
}

// stream is a ServerStream whose context names the caller.
type stream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *stream) Context() context.Context { return s.ctx }
