package devcerts

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestMakeVerifies: the certificates verify against the CA Make made, for
// the use each is for, and each key is its certificate's: the server's for
// the loopback names, a client's with its SPIFFE ID as the URI SAN.
func TestMakeVerifies(t *testing.T) {
	now := time.Now()
	files, err := Make([]string{"billing", "crm-sync"}, now)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]File{}
	for _, f := range files {
		byName[f.Name] = f
	}
	cert := func(name string) *x509.Certificate {
		t.Helper()
		f, ok := byName[name+".pem"]
		if !ok {
			t.Fatalf("no %s.pem among %d files", name, len(files))
		}
		if _, err := tls.X509KeyPair(f.Data, byName[name+"-key.pem"].Data); err != nil {
			t.Errorf("%s-key.pem is not %s.pem's key: %v", name, name, err)
		}
		if k := byName[name+"-key.pem"].Mode; k != 0o600 {
			t.Errorf("%s-key.pem mode %v, want 0600", name, k)
		}
		b, _ := pem.Decode(f.Data)
		if b == nil || b.Type != "CERTIFICATE" {
			t.Fatalf("%s.pem holds no certificate", name)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert("ca"))
	at := now.Add(Validity - time.Minute) // valid until the end it claims

	server := cert("server")
	for _, host := range []string{"127.0.0.1", "::1", "localhost"} {
		if _, err := server.Verify(x509.VerifyOptions{Roots: roots, DNSName: host, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("server certificate for %s: %v", host, err)
		}
	}
	if _, err := server.Verify(x509.VerifyOptions{Roots: roots, DNSName: "example.com", CurrentTime: at}); err == nil {
		t.Error("server certificate verifies for example.com; want the loopback names only")
	}

	for _, tc := range []struct{ name, want string }{
		{"billing", "spiffe://consentd.local/billing"},
		{"crm-sync", "spiffe://consentd.local/crm-sync"},
	} {
		c := cert(tc.name)
		if _, err := c.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("%s client certificate: %v", tc.name, err)
		}
		var got []string
		for _, u := range c.URIs {
			got = append(got, u.String())
		}
		if len(got) != 1 || got[0] != tc.want {
			t.Errorf("%s client certificate URI SANs %q, want [%q]", tc.name, got, tc.want)
		}
		if f := byName[tc.name+".pem"]; f.Caller != tc.want {
			t.Errorf("%s.pem Caller %q, want %q", tc.name, f.Caller, tc.want)
		}
		if _, err := c.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
			t.Errorf("%s client certificate verifies as a server's; want client auth only", tc.name)
		}
	}
	if _, err := server.Verify(x509.VerifyOptions{Roots: roots, DNSName: "127.0.0.1", CurrentTime: now.Add(Validity + time.Hour)}); err == nil {
		t.Error("server certificate verifies past its validity")
	}
}
