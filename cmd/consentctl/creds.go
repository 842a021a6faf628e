package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/consentd/consentd/client"
)

// credentials are the global flags that identify consentctl to a secured
// consentd: a CA to trust and a client certificate (TLS, mTLS), and a
// bearer token.
type credentials struct {
	ca, cert, key, bearer string
}

// options turns the flags, or their environment variables, into client
// options: TLS when a CA or a client certificate is given, a bearer token
// when one is. Errors name the flag.
func (c credentials) options(env func(string) string) ([]client.Option, error) {
	or := func(flag, name string) string {
		if flag != "" {
			return flag
		}
		return env(name)
	}
	ca, cert, key, bearer := or(c.ca, caEnv), or(c.cert, certEnv), or(c.key, keyEnv), or(c.bearer, bearerEnv)
	var opts []client.Option
	switch {
	case cert != "" && key == "":
		return nil, fmt.Errorf("--cert: needs --key (the certificate's private key, or $%s)", keyEnv)
	case key != "" && cert == "":
		return nil, fmt.Errorf("--key: needs --cert (the client certificate, or $%s)", certEnv)
	}
	if ca != "" || cert != "" {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if ca != "" {
			pem, err := os.ReadFile(ca)
			if err != nil {
				return nil, fmt.Errorf("--ca: %w", err)
			}
			cfg.RootCAs = x509.NewCertPool()
			if !cfg.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("--ca: %s holds no PEM certificate", ca)
			}
		}
		if cert != "" {
			pair, err := tls.LoadX509KeyPair(cert, key)
			if err != nil {
				return nil, fmt.Errorf("--cert, --key: %w", err)
			}
			cfg.Certificates = []tls.Certificate{pair}
		}
		opts = append(opts, client.WithTLS(cfg))
	}
	if bearer != "" {
		opts = append(opts, client.WithBearerToken(bearer))
	}
	return opts, nil
}
