package unsubscribe

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzParse feeds arbitrary strings to the token parser and to Verify. A
// string either is refused with ErrInvalid, or is the one canonical spelling
// of what it claims; and Verify accepts exactly the tokens Mint makes. The
// seed corpus (testdata/fuzz/FuzzParse) holds genuine, expired, tampered and
// malformed tokens of the fuzzSecret signer.
func FuzzParse(f *testing.F) {
	s, err := NewSigner([]byte(fuzzSecret))
	if err != nil {
		f.Fatal(err)
	}
	at := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	tok, err := s.Mint(Token{Purpose: "email_marketing", Expires: at.Add(DefaultTTL)})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(tok)
	f.Add(tok[:len(tok)-1] + "A")
	f.Add("")
	f.Add("AQ")
	f.Fuzz(func(t *testing.T, token string) {
		claims, signed, mac, err := parse(token)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("parse(%q): %v, want ErrInvalid", token, err)
			}
			if _, verr := s.Verify(token, at); !errors.Is(verr, ErrInvalid) {
				t.Fatalf("Verify(%q) = %v after parse refused it", token, verr)
			}
			return
		}
		// Parsing is the inverse of the encoding: one token, one spelling.
		if got := b64.EncodeToString(append(append([]byte(nil), signed...), mac...)); got != token {
			t.Fatalf("parse(%q) is not canonical: re-encodes as %q", token, got)
		}
		if !bytes.Equal(body(claims), signed) {
			t.Fatalf("parse(%q) = %+v, whose body differs from the signed bytes", token, claims)
		}
		// Only what Mint makes verifies, and then as what it claims.
		minted, err := s.Mint(claims)
		if err != nil {
			t.Fatalf("parse accepted %+v, which Mint refuses: %v", claims, err)
		}
		got, err := s.Verify(token, claims.Expires.Add(-time.Second))
		if (err == nil) != (minted == token) {
			t.Fatalf("Verify(%q) = %v, but Mint gives %q", token, err, minted)
		}
		if err == nil && got != claims {
			t.Fatalf("Verify(%q) = %+v, want %+v", token, got, claims)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Fatalf("Verify(%q) before its expiry: %v", token, err)
		}
	})
}

const fuzzSecret = "fuzz secret for unsubscribe tokens"

// TestSeedCorpus keeps the seed corpus meaningful: its genuine tokens
// verify, its expired one is expired, and its tampered ones are refused.
func TestSeedCorpus(t *testing.T) {
	s, err := NewSigner([]byte(fuzzSecret))
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		file string
		want error
	}{
		{"genuine", nil},
		{"genuine-ads", nil},
		{"genuine-max-expiry", nil},
		{"expired", ErrExpired},
		{"purpose-swapped", ErrInvalid},
		{"expiry-extended", ErrInvalid},
		{"other-secret", ErrInvalid},
		{"expiry-zero", ErrInvalid},
		{"expiry-past-9999", ErrInvalid},
	}
	for _, tt := range tests {
		b, err := os.ReadFile(filepath.Join("testdata", "fuzz", "FuzzParse", tt.file))
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(string(b), "\n")
		if len(lines) < 2 || lines[0] != "go test fuzz v1" {
			t.Fatalf("%s: not a fuzz corpus file", tt.file)
		}
		tok, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "string("), ")"))
		if err != nil {
			t.Fatalf("%s: %v", tt.file, err)
		}
		if _, err := s.Verify(tok, at); !errors.Is(err, tt.want) {
			t.Errorf("%s: Verify = %v, want %v", tt.file, err, tt.want)
		}
	}
}
