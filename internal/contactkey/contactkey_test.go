package contactkey_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/consentd/consentd/consent"
	"github.com/consentd/consentd/internal/contactkey"
	"github.com/consentd/consentd/internal/identifier"
)

var secret = []byte("0123456789abcdef0123456789abcdef")

// TestKeySpellings: every spelling of one identifier is one key, and the
// key is HMAC-SHA256(secret, canonical form): byte for byte what stores
// written before issue 17 hold for contacts written canonically, which the
// migration relies on.
func TestKeySpellings(t *testing.T) {
	k, err := contactkey.New(secret, contactkey.WithDefaultRegion("GB"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		spellings []string
		canonical string
		kind      consent.IDKind
	}{
		{[]string{"ada@example.com", "Ada@Example.COM", "  ada@example.com \n"}, "ada@example.com", consent.IDEmail},
		{[]string{"zo\u00eb@example.com", "Zoe\u0308@example.com"}, "zo\u00eb@example.com", consent.IDEmail},
		{[]string{"ada@xn--bcher-kva.example", "ada@bücher.example", "ADA@BÜCHER.EXAMPLE"}, "ada@xn--bcher-kva.example", consent.IDEmail},
		{[]string{"+442079460958", "+44 20 7946 0958", "020 7946 0958", "(020) 7946-0958"}, "+442079460958", consent.IDPhone},
		{[]string{"crm:12345", "CRM:12345", " crm:12345"}, "crm:12345", consent.IDExternal},
	}
	for _, tt := range tests {
		mac := hmac.New(sha256.New, secret)
		mac.Write([]byte(tt.canonical))
		var want consent.Key
		copy(want[:], mac.Sum(nil))
		for _, s := range tt.spellings {
			got, kind, err := k.Identify(s)
			if got != want || kind != tt.kind || err != nil {
				t.Errorf("Identify(%q) = %v, %v, %v; want HMAC(%q) %v, %v", s, got, kind, err, tt.canonical, want, tt.kind)
			}
		}
	}
	// No provider-specific folding: these stay distinct contacts.
	a, _ := k.Key("ada.lovelace+news@gmail.com")
	b, _ := k.Key("adalovelace@gmail.com")
	if a == b {
		t.Error("dots and +tags were folded")
	}
}

func TestNewRefuses(t *testing.T) {
	for _, tt := range []struct {
		name string
		opts []contactkey.Option
	}{
		{"unknown region", []contactkey.Option{contactkey.WithDefaultRegion("UK")}},
		{"lower-case region", []contactkey.Option{contactkey.WithDefaultRegion("gb")}},
		{"unknown scheme", []contactkey.Option{contactkey.WithScheme("md5")}},
	} {
		if _, err := contactkey.New(secret, tt.opts...); err == nil {
			t.Errorf("%s: New accepted it", tt.name)
		}
	}
	k, err := contactkey.New(secret, contactkey.WithScheme(contactkey.SchemeHMACSHA256))
	if err != nil || k.Scheme() != contactkey.SchemeHMACSHA256 {
		t.Errorf("New(hmac-sha256) = scheme %q, %v", k.Scheme(), err)
	}
	if d, _ := contactkey.New(secret); d.Scheme() != contactkey.SchemeHMACSHA256 {
		t.Errorf("default scheme %q, want %q", d.Scheme(), contactkey.SchemeHMACSHA256)
	}
	// Without a region, a national number is refused, naming the flag.
	if _, err := k.Key("020 7946 0958"); err != identifier.ErrPhoneRegion {
		t.Errorf("national number without a region: %v, want %v", err, identifier.ErrPhoneRegion)
	}
}

func TestKey(t *testing.T) {
	k, err := contactkey.New(secret)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := k.Key("Ada@Example.com ")
	b, _ := k.Key("ada@example.com")
	if a != b {
		t.Error("spellings that normalise alike got different keys")
	}
	c, _ := k.Key("ada@example.org")
	if a == c {
		t.Error("different contacts got the same key")
	}
	other, _ := contactkey.New(bytes.Repeat([]byte{7}, 32))
	d, _ := other.Key("ada@example.com")
	if a == d {
		t.Error("different secrets gave the same key")
	}
	if strings.Contains(a.String(), "ada") {
		t.Error("key string reveals the contact")
	}
	if _, err := k.Key(" "); err != identifier.ErrEmpty {
		t.Errorf("Key(blank) err = %v, want %v", err, identifier.ErrEmpty)
	}
	if _, err := k.Key("ada\u200b@example.com"); err != identifier.ErrInvisible {
		t.Errorf("Key(zero-width) err = %v, want %v", err, identifier.ErrInvisible)
	}
	if _, err := contactkey.New([]byte("short")); err == nil {
		t.Error("New accepted a 5-byte secret")
	}
}

func TestKeyConcurrent(t *testing.T) {
	k, _ := contactkey.New(secret)
	want, _ := k.Key("ada@example.com")
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				if got, _ := k.Key("ada@example.com"); got != want {
					t.Error("concurrent Key gave a different key")
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestLoadOrCreateSecret(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "secret")
	first, err := contactkey.LoadOrCreateSecret(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != contactkey.SecretBytes {
		t.Errorf("secret is %d bytes, want %d", len(first), contactkey.SecretBytes)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("secret file mode = %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	again, err := contactkey.LoadOrCreateSecret(path)
	if err != nil || !bytes.Equal(first, again) {
		t.Errorf("second load = %x, %v; want the same secret", again, err)
	}
	short := filepath.Join(t.TempDir(), "short")
	os.WriteFile(short, []byte("x"), 0o600)
	if _, err := contactkey.LoadOrCreateSecret(short); err == nil {
		t.Error("a 1-byte secret file was accepted")
	}
}

func TestLoadOrCreateSecretRace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secret")
	got := make([][]byte, 8)
	var wg sync.WaitGroup
	for i := range got {
		wg.Go(func() {
			s, err := contactkey.LoadOrCreateSecret(path)
			if err != nil {
				t.Error(err)
			}
			got[i] = s
		})
	}
	wg.Wait()
	for i := range got {
		if !bytes.Equal(got[i], got[0]) {
			t.Fatalf("concurrent starts disagree on the secret")
		}
	}
}

// FuzzKey: a contact's key is the HMAC of its canonical form, whatever the
// spelling, and the canonical form keys to itself.
func FuzzKey(f *testing.F) {
	for _, s := range []string{"Ada@Example.com", " zoe\u0308@x.example ", "ada@bücher.example", "+44 20 7946 0958", "020 7946 0958", "crm:1", "", "ada\u200b@x.io"} {
		f.Add(s)
	}
	k, _ := contactkey.New(secret, contactkey.WithDefaultRegion("GB"))
	p := identifier.Parser{DefaultRegion: "GB"}
	f.Fuzz(func(t *testing.T, s string) {
		key, kind, err := k.Identify(s)
		id, perr := p.Parse(s)
		if err != perr || kind != id.Kind {
			t.Fatalf("Identify(%q) = %v, %v; Parse = %+v, %v", s, kind, err, id, perr)
		}
		if err != nil {
			return
		}
		mac := hmac.New(sha256.New, secret)
		mac.Write([]byte(id.Canonical))
		if !bytes.Equal(key[:], mac.Sum(nil)) {
			t.Fatalf("Key(%q) is not HMAC(%q)", s, id.Canonical)
		}
	})
}

// BenchmarkKey: the cost of keying each kind and spelling; the canonical
// email and E.164 cases are the warm audience path's.
func BenchmarkKey(b *testing.B) {
	k, _ := contactkey.New(secret, contactkey.WithDefaultRegion("GB"))
	for _, bc := range []struct{ name, contact string }{
		{"email", "ada.lovelace@example.com"},
		{"email-mixed-case", "Ada.Lovelace@Example.com"},
		{"email-idn", "ada@bücher.example"},
		{"e164", "+442079460958"},
		{"phone-formatted", "+44 20 7946 0958"},
		{"phone-national", "020 7946 0958"},
		{"external", "crm:12345"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				k.Key(bc.contact)
			}
		})
	}
}
