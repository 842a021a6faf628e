// Package devcerts makes the certificates of consentctl dev-certs: a CA, a
// server certificate for the loopback names and client certificates whose
// URI SAN is a SPIFFE ID naming the caller. They are for trying mutual TLS
// on one machine, not for production.
package devcerts

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"time"
)

// TrustDomain is the SPIFFE trust domain of the client certificates: caller
// NAME is spiffe://consentd.local/NAME.
const TrustDomain = "consentd.local"

// Validity is how long the certificates are valid.
const Validity = 365 * 24 * time.Hour

// File is one file of the set Make returns.
type File struct {
	Name   string // a file name, no directory
	Data   []byte // PEM
	Mode   os.FileMode
	Holds  string // what it holds, and the flag that takes it
	Caller string // for a client certificate, the caller name consentd sees
}

// Make makes a CA, a server certificate for this host's loopback names
// and a client certificate per name, all ECDSA P-256, valid from an hour
// before now (clock skew) for Validity.
func Make(clients []string, now time.Time) ([]File, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caTmpl, err := template(now, pkix.Name{CommonName: "consentd dev CA"})
	if err != nil {
		return nil, err
	}
	caTmpl.IsCA, caTmpl.BasicConstraintsValid, caTmpl.MaxPathLenZero = true, true, true
	caTmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	caKeyPEM, err := keyPEM(caKey)
	if err != nil {
		return nil, err
	}
	files := []File{
		{Name: "ca.pem", Data: certPEM(caDER), Mode: 0o644, Holds: "the dev CA's certificate (consentd --client-ca, consentctl --ca)"},
		{Name: "ca-key.pem", Data: caKeyPEM, Mode: 0o600, Holds: "the dev CA's key"},
	}
	issue := func(name, holds, keyHolds, caller string, edit func(*x509.Certificate)) error {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		tmpl, err := template(now, pkix.Name{CommonName: name})
		if err != nil {
			return err
		}
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		edit(tmpl)
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			return err
		}
		kp, err := keyPEM(key)
		if err != nil {
			return err
		}
		files = append(files,
			File{Name: name + ".pem", Data: certPEM(der), Mode: 0o644, Holds: holds, Caller: caller},
			File{Name: name + "-key.pem", Data: kp, Mode: 0o600, Holds: keyHolds})
		return nil
	}
	err = issue("server", "the server certificate for localhost, 127.0.0.1, ::1 (consentd --tls-cert)", "its key (consentd --tls-key)", "", func(c *x509.Certificate) {
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		c.DNSNames = []string{"localhost"}
		c.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	})
	if err != nil {
		return nil, err
	}
	for _, n := range clients {
		id := &url.URL{Scheme: "spiffe", Host: TrustDomain, Path: "/" + n}
		err := issue(n, "the client certificate of "+id.String()+" (consentctl --cert)", "its key (consentctl --key)", id.String(), func(c *x509.Certificate) {
			c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
			c.URIs = []*url.URL{id}
		})
		if err != nil {
			return nil, err
		}
	}
	return files, nil
}

// template starts a certificate: a random 128-bit serial, the validity.
func template(now time.Time, subject pkix.Name) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, err
	}
	return &x509.Certificate{
		SerialNumber: serial,
		Subject:      subject,
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(Validity),
	}, nil
}

func certPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func keyPEM(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}
