package daemon

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/consentd/consentd/client"
	"github.com/consentd/consentd/internal/tokensfile"
)

// testCA is a certificate authority made for one test, its files in a
// t.TempDir().
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string // the CA certificate, PEM
	pool *x509.CertPool
	dir  string
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ca := &testCA{cert: cert, key: key, pool: x509.NewCertPool(), dir: t.TempDir()}
	ca.pool.AddCert(cert)
	ca.file = filepath.Join(ca.dir, name+"-ca.pem")
	writePEM(t, ca.file, "CERTIFICATE", der)
	return ca
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// issue signs a leaf certificate: a server one for 127.0.0.1 and localhost
// when server is set, else a client one with cn and, if given, a URI SAN.
// It returns the certificate's and key's files and the pair.
func (ca *testCA) issue(t *testing.T, cn, uri string, server bool) (certFile, keyFile string, pair tls.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		tmpl.DNSNames = []string{"localhost"}
	}
	if uri != "" {
		u, err := url.Parse(uri)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = []*url.URL{u}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(ca.dir, cn+".pem"), filepath.Join(ca.dir, cn+"-key.pem")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "PRIVATE KEY", keyDER)
	pair, err = tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, pair
}

// check calls Check through the Go client and returns the call's code.
func check(t *testing.T, target string, opts ...client.Option) (codes.Code, error) {
	t.Helper()
	c, err := client.New(target, append(opts, client.WithTimeout(5*time.Second))...)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Check(context.Background(), contactGranted, "email_marketing")
	var ce *client.Error
	switch {
	case err == nil:
		return codes.OK, nil
	case errors.As(err, &ce):
		return ce.Code, err
	}
	return codes.Unknown, err
}

// TestMutualTLS: with --tls-cert, --tls-key and --client-ca, only callers
// with a certificate of the client CA are served, named by the SPIFFE URI
// SAN or else the CN, and logged with that name; probes use the plaintext
// health listener.
func TestMutualTLS(t *testing.T) {
	ca := newTestCA(t, "consentd-test")
	other := newTestCA(t, "other")
	serverCert, serverKey, _ := ca.issue(t, "consentd", "", true)
	const spiffeID = "spiffe://example.org/ns/mail/sa/sender"
	_, _, spiffe := ca.issue(t, "cn-not-used", spiffeID, false)
	_, _, cnOnly := ca.issue(t, "crm-dialer", "", false)
	_, _, stranger := other.issue(t, "crm-dialer", "spiffe://example.org/ns/evil", false)

	cfg := testConfig(t)
	cfg.HealthListen, cfg.LogLevel = "127.0.0.1:0", slog.LevelDebug
	cfg.TLSCert, cfg.TLSKey, cfg.ClientCA = serverCert, serverKey, ca.file
	d := startDaemon(t, cfg)
	withCert := func(certs ...tls.Certificate) client.Option {
		return client.WithTLS(&tls.Config{RootCAs: ca.pool, Certificates: certs, MinVersion: tls.VersionTLS13})
	}

	// Without a certificate of the client CA the TLS handshake fails
	// (TLS 1.3: the server refuses the client's certificate after the
	// client's side of the handshake is done), so gRPC reports
	// UNAVAILABLE, not UNAUTHENTICATED: no call reaches consentd.
	for _, tc := range []struct {
		name string
		opt  client.Option
	}{
		{"no client certificate", withCert()},
		{"certificate of another CA", withCert(stranger)},
		{"plaintext", client.WithDialOptions()},
	} {
		if code, err := check(t, d.addr, tc.opt); code != codes.Unavailable {
			t.Errorf("%s: code %v (%v), want Unavailable", tc.name, code, err)
		}
	}

	for _, tc := range []struct {
		name, caller string
		cert         tls.Certificate
	}{
		{"SPIFFE URI SAN", spiffeID, spiffe},
		{"subject CN", "crm-dialer", cnOnly},
	} {
		if code, err := check(t, d.addr, withCert(tc.cert)); code != codes.OK {
			t.Errorf("%s: code %v (%v), want OK", tc.name, code, err)
		}
		if want := `"caller":"` + tc.caller + `"`; !strings.Contains(d.logs.String(), want) {
			t.Errorf("%s: logs lack %s:\n%s", tc.name, want, d.logs)
		}
	}
	if strings.Contains(d.logs.String(), "cn-not-used") {
		t.Errorf("the SPIFFE certificate's caller is its CN, want its URI SAN:\n%s", d.logs)
	}

	// Probes carry no identity: the plaintext health listener serves them.
	_, hc := healthClient(t, d.health)
	if got := checkHealth(t, hc, ""); got != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health listener: %v, want SERVING", got)
	}
	if logs := d.stop(t); !strings.Contains(logs, `"tls":"mtls"`) {
		t.Errorf("consentd serving does not report tls=mtls:\n%s", logs)
	}
}

// TestBearerTokens: with --tokens, only calls with a listed token are
// served (unary and streaming), named by the file and logged with that
// name, never with a token; health checks on the main listener stay open.
func TestBearerTokens(t *testing.T) {
	const good, wrong = "s3cret-mailer-token-8f2c", "s3cret-guessed-token-0000"
	cfg := testConfig(t)
	cfg.LogLevel, cfg.TokensFile = slog.LevelDebug, tokensfile.Write(t, map[string]string{"mailer": good, "crm": "another-token"})
	d := startDaemon(t, cfg)

	for _, tc := range []struct {
		name string
		opts []client.Option
		want codes.Code
	}{
		{"no token", nil, codes.Unauthenticated},
		{"wrong token", []client.Option{client.WithBearerToken(wrong)}, codes.Unauthenticated},
		{"right token", []client.Option{client.WithBearerToken(good)}, codes.OK},
	} {
		if code, err := check(t, d.addr, tc.opts...); code != tc.want {
			t.Errorf("%s: code %v (%v), want %v", tc.name, code, err, tc.want)
		}
		// A stream is refused or served alike.
		c, err := client.New(d.addr, tc.opts...)
		if err != nil {
			t.Fatal(err)
		}
		var code codes.Code
		for _, err := range c.ListEvents(context.Background(), contactGranted) {
			var ce *client.Error
			if errors.As(err, &ce) {
				code = ce.Code
			}
		}
		c.Close()
		if code != tc.want {
			t.Errorf("%s: ListEvents code %v, want %v", tc.name, code, tc.want)
		}
	}

	_, hc := healthClient(t, d.addr)
	if got := checkHealth(t, hc, ""); got != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health check without a token: %v, want SERVING", got)
	}

	logs := d.stop(t)
	for _, want := range []string{`"caller":"mailer"`, `"msg":"unauthenticated call"`, `"reason":"unknown bearer token"`, `"tokens":2`} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %s:\n%s", want, logs)
		}
	}
	for _, secret := range []string{good, wrong, "s3cret", contactGranted} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs contain %q:\n%s", secret, logs)
		}
	}
}

// TestBearerTokenOverTLS: a token over a server-authenticated TLS listener
// (no client certificates): the deployment for a remote caller without a
// PKI of its own.
func TestBearerTokenOverTLS(t *testing.T) {
	ca := newTestCA(t, "consentd-test")
	serverCert, serverKey, _ := ca.issue(t, "consentd", "", true)
	cfg := testConfig(t)
	cfg.LogLevel, cfg.TLSCert, cfg.TLSKey = slog.LevelDebug, serverCert, serverKey
	cfg.TokensFile = tokensfile.Write(t, map[string]string{"ads-agency": "agency-token"})
	d := startDaemon(t, cfg)
	tlsOpt := client.WithTLS(&tls.Config{RootCAs: ca.pool, ServerName: "localhost"})
	if code, err := check(t, d.addr, tlsOpt); code != codes.Unauthenticated {
		t.Errorf("TLS without a token: code %v (%v), want Unauthenticated", code, err)
	}
	if code, err := check(t, d.addr, tlsOpt, client.WithBearerToken("agency-token")); code != codes.OK {
		t.Errorf("TLS with the token: code %v (%v), want OK", code, err)
	}
	if logs := d.stop(t); !strings.Contains(logs, `"caller":"ads-agency"`) || !strings.Contains(logs, `"tls":"tls"`) {
		t.Errorf("logs lack caller ads-agency or tls=tls:\n%s", logs)
	}
}

// TestSecurityFlagsRefused: flag combinations that make no sense, and
// files that cannot be used, stop consentd at start with exit 2 and a
// message naming the flag (and the line of a tokens file).
func TestSecurityFlagsRefused(t *testing.T) {
	ca := newTestCA(t, "consentd-test")
	cert, key, _ := ca.issue(t, "consentd", "", true)
	dir := t.TempDir()
	malformed := filepath.Join(dir, "tokens")
	h := sha256.Sum256([]byte("x"))
	if err := os.WriteFile(malformed, []byte("# callers\nmailer "+hex.EncodeToString(h[:])+"\ncrm not-hex\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	otherKey := writeKey(t, dir)
	for _, tc := range []struct {
		name string
		set  func(*Config)
		want string
	}{
		{"cert without key", func(c *Config) { c.TLSCert = cert }, "--tls-cert: needs --tls-key"},
		{"key without cert", func(c *Config) { c.TLSKey = key }, "--tls-key: needs --tls-cert"},
		{"client CA without cert", func(c *Config) { c.ClientCA = ca.file }, "--client-ca: needs --tls-cert and --tls-key"},
		{"key of another certificate", func(c *Config) { c.TLSCert, c.TLSKey = cert, otherKey }, "--tls-cert, --tls-key: tls: private key does not match public key"},
		{"client CA not PEM", func(c *Config) { c.TLSCert, c.TLSKey, c.ClientCA = cert, key, malformed }, "--client-ca: " + malformed + " holds no PEM certificate"},
		{"malformed tokens file", func(c *Config) { c.TokensFile = malformed }, "--tokens: " + malformed + `:3: caller "crm": want the token's SHA-256 as 64 hex digits`},
		{"missing tokens file", func(c *Config) { c.TokensFile = filepath.Join(dir, "nope") }, "--tokens: open " + filepath.Join(dir, "nope")},
	} {
		var out bytes.Buffer
		cfg := testConfig(t)
		tc.set(&cfg)
		if code := Run(context.Background(), cfg, &out); code != 2 || !strings.Contains(out.String(), tc.want) {
			t.Errorf("%s: exit %d, output %q; want 2 and %q", tc.name, code, out.String(), tc.want)
		}
	}
}

// writeKey writes a fresh EC key that belongs to no certificate.
func writeKey(t *testing.T, dir string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "stray-key.pem")
	writePEM(t, path, "PRIVATE KEY", der)
	return path
}
