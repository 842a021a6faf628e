package daemon

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/consentd/consentd/consent"
	"github.com/consentd/consentd/internal/caller"
	"github.com/consentd/consentd/internal/policy"
)

// loadPolicy reads the --policy file, its purposes checked against the
// registry.
func loadPolicy(path string, purposes *consent.Registry, log *slog.Logger) (*policy.Guard, error) {
	names := make([]string, 0, len(purposes.All()))
	for _, p := range purposes.All() {
		names = append(names, p.Name)
	}
	g, err := policy.Load(path, names, log)
	if err != nil {
		return nil, fmt.Errorf("--policy: %w", err)
	}
	return g, nil
}

// security is what the main listener needs for caller identity: its TLS
// configuration (nil: plaintext) and the tokens file (nil: no tokens).
type security struct {
	tls    *tls.Config
	tokens *caller.BearerTokens
	// policy, when set, limits each caller to the RPCs and purposes of
	// --policy; nil: every identified caller may do everything.
	policy *policy.Guard
}

// checkSecurity refuses flag combinations that make no sense.
func (c Config) checkSecurity() error {
	switch {
	case c.TLSCert != "" && c.TLSKey == "":
		return fmt.Errorf("--tls-cert: needs --tls-key (the certificate's private key)")
	case c.TLSKey != "" && c.TLSCert == "":
		return fmt.Errorf("--tls-key: needs --tls-cert (the server certificate)")
	case c.ClientCA != "" && c.TLSCert == "":
		return fmt.Errorf("--client-ca: needs --tls-cert and --tls-key: client certificates are verified only over TLS")
	case c.PolicyFile != "" && c.TokensFile == "" && c.ClientCA == "":
		return fmt.Errorf("--policy: needs caller identity (--tokens or --client-ca): entitlements are per caller")
	}
	return nil
}

// loadSecurity reads the certificates and the tokens file the flags name.
func loadSecurity(c Config) (security, error) {
	var s security
	if c.TokensFile != "" {
		t, err := caller.LoadBearerTokens(c.TokensFile)
		if err != nil {
			return s, fmt.Errorf("--tokens: %w", err)
		}
		s.tokens = t
	}
	if c.TLSCert == "" {
		return s, nil
	}
	cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
	if err != nil {
		return s, fmt.Errorf("--tls-cert, --tls-key: %w", err)
	}
	// TLS 1.3 is negotiated whenever the client offers it; 1.2 is the floor.
	s.tls = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if c.ClientCA != "" {
		pem, err := os.ReadFile(c.ClientCA)
		if err != nil {
			return s, fmt.Errorf("--client-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return s, fmt.Errorf("--client-ca: %s holds no PEM certificate", c.ClientCA)
		}
		s.tls.ClientCAs = pool
		s.tls.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return s, nil
}

// identityOn reports whether calls must carry a caller identity.
func (s security) identityOn() bool {
	return s.tokens != nil || (s.tls != nil && s.tls.ClientAuth == tls.RequireAndVerifyClientCert)
}

// serverOptions are the main listener's credentials and, with identity on,
// the interceptors that name callers (before logging, so calls are logged
// with their caller). decode, the options that refuse a request body that
// is not protobuf, come after identity, which names the caller they log,
// and before the policy, which reads requests.
func (s security) serverOptions(log *slog.Logger, decode []grpc.ServerOption) []grpc.ServerOption {
	var opts []grpc.ServerOption
	if s.tls != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(s.tls)))
	}
	if s.identityOn() {
		a := caller.New(caller.Config{Tokens: s.tokens, ClientCerts: s.tls != nil && s.tls.ClientCAs != nil, Log: log})
		opts = append(opts, grpc.ChainUnaryInterceptor(a.UnaryInterceptor()), grpc.ChainStreamInterceptor(a.StreamInterceptor()))
		opts = append(opts, decode...)
		// Entitlements and rate limits after identity, before any
		// handler touches the cache or the store.
		if s.policy != nil {
			opts = append(opts, grpc.ChainUnaryInterceptor(s.policy.UnaryInterceptor()), grpc.ChainStreamInterceptor(s.policy.StreamInterceptor()))
		}
		return opts
	}
	return append(opts, decode...)
}

// logAttrs describe the security of the main listener for the ready line.
func (s security) logAttrs() []any {
	mode := "off"
	switch {
	case s.tls != nil && s.tls.ClientCAs != nil:
		mode = "mtls"
	case s.tls != nil:
		mode = "tls"
	}
	attrs := []any{"tls", mode}
	if s.tokens != nil {
		attrs = append(attrs, "tokens", s.tokens.Len())
	}
	if s.policy != nil {
		p := s.policy.Policy()
		limited := 0
		for _, c := range p.Callers() {
			if c.Rate != nil {
				limited++
			}
		}
		attrs = append(attrs, "policy_callers", p.Len(), "rate_limited_callers", limited)
	}
	return attrs
}
