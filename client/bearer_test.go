package client

import (
	"strings"
	"testing"
)

// TestBearerTokenNeedsTLS: a token is sent in plaintext only to a Unix
// socket or a loopback address; anywhere else New asks for WithTLS.
func TestBearerTokenNeedsTLS(t *testing.T) {
	for _, target := range []string{"127.0.0.1:50051", "localhost:50051", "[::1]:50051", "unix:/run/consentd.sock", "dns:///localhost:50051", "127.0.0.2:1"} {
		c, err := New(target, WithBearerToken("tok"))
		if err != nil {
			t.Errorf("New(%q) with a token in plaintext: %v, want a client", target, err)
			continue
		}
		c.Close()
	}
	for _, target := range []string{"consentd.internal:50051", "10.0.0.7:50051", "dns:///consentd:50051"} {
		c, err := New(target, WithBearerToken("tok"))
		if err == nil {
			c.Close()
			t.Errorf("New(%q) with a token in plaintext: no error, want one asking for transport security", target)
		} else if !strings.Contains(err.Error(), "transport") {
			t.Errorf("New(%q): %v, want an error about transport security", target, err)
		}
	}
}
