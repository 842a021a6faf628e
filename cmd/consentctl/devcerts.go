package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
)

// trustDomain is the SPIFFE trust domain of dev-certs' client
// certificates: caller NAME is spiffe://consentd.local/NAME.
const trustDomain = "consentd.local"

// devCertsValidity is how long dev-certs' certificates are valid.
const devCertsValidity = 365 * 24 * time.Hour

// names is a repeatable flag.
type names []string

func (n *names) String() string     { return strings.Join(*n, ",") }
func (n *names) Set(s string) error { *n = append(*n, s); return nil }

// clientName is what a SPIFFE path segment and a file name both accept.
var clientName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

func setupDevCerts(fs *flag.FlagSet) runner {
	var clients names
	fs.Var(&clients, "client", "also make a client certificate for caller `NAME` (repeatable), named spiffe://"+trustDomain+"/NAME")
	return func(_ context.Context, c *call, args []string) (int, error) {
		dir := args[0]
		for i, n := range clients {
			switch {
			case !clientName.MatchString(n):
				return exitError, fmt.Errorf("--client: %q is not a caller name: want letters, digits, '.', '_' and '-', starting with a letter or digit", n)
			case n == "ca" || n == "server":
				return exitError, fmt.Errorf("--client: %q would share the %s certificate's files: choose another name", n, n)
			case slices.Contains(clients[:i], n):
				return exitError, fmt.Errorf("--client: %q given twice", n)
			}
		}
		files, err := devCerts(clients, time.Now())
		if err != nil {
			return exitError, err
		}
		// Nothing is written unless every file is new: an existing key is
		// never replaced (its certificates would stop matching it).
		for _, f := range files {
			if _, err := os.Lstat(filepath.Join(dir, f.name)); err == nil {
				return exitError, fmt.Errorf("%s exists: dev-certs never overwrites a file; choose an empty DIR", filepath.Join(dir, f.name))
			} else if !errors.Is(err, os.ErrNotExist) {
				return exitError, err
			}
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return exitError, err
		}
		rows := make([][]string, 0, len(files))
		var out devCertsOutput
		for _, f := range files {
			path := filepath.Join(dir, f.name)
			if err := writeNew(path, f.data, f.mode); err != nil {
				return exitError, err
			}
			rows = append(rows, []string{path, f.holds})
			out.Files = append(out.Files, devCertFile{Path: path, Holds: f.holds, Caller: f.caller})
		}
		if c.out.json {
			return exitOK, c.out.jsonValue(out)
		}
		return exitOK, c.out.table([]string{"FILE", "HOLDS"}, rows)
	}
}

// devCertsOutput is dev-certs' --json output.
type devCertsOutput struct {
	Files []devCertFile `json:"files"`
}

type devCertFile struct {
	Path   string `json:"path"`
	Holds  string `json:"holds"`
	Caller string `json:"caller,omitempty"` // the caller name consentd sees
}

// devFile is one file dev-certs writes.
type devFile struct {
	name   string // in DIR
	data   []byte
	mode   os.FileMode
	holds  string
	caller string
}

// writeNew writes data to a file that must not exist yet.
func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// devCerts makes a CA, a server certificate for this host's loopback names
// and a client certificate per name, all ECDSA P-256, valid from an hour
// before now (clock skew) for devCertsValidity.
func devCerts(clients []string, now time.Time) ([]devFile, error) {
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
	files := []devFile{
		{name: "ca.pem", data: certPEM(caDER), mode: 0o644, holds: "the dev CA's certificate (consentd --client-ca, consentctl --ca)"},
		{name: "ca-key.pem", data: caKeyPEM, mode: 0o600, holds: "the dev CA's key"},
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
			devFile{name: name + ".pem", data: certPEM(der), mode: 0o644, holds: holds, caller: caller},
			devFile{name: name + "-key.pem", data: kp, mode: 0o600, holds: keyHolds})
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
		id := &url.URL{Scheme: "spiffe", Host: trustDomain, Path: "/" + n}
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
		NotAfter:     now.Add(devCertsValidity),
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
