package contactkey_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/consentd/consentd/consent"
	"github.com/consentd/consentd/internal/contactkey"
)

var secret = []byte("0123456789abcdef0123456789abcdef")

func TestNormalise(t *testing.T) {
	tests := []struct{ in, want string }{
		{"Ada@Example.COM", "ada@example.com"},
		{"  ada@example.com \n", "ada@example.com"},
		{"Zoe\u0308@example.com", "zo\u00eb@example.com"}, // decomposed ë composes (NFC)
		{"ÉLODIE@EXAMPLE.FR", "élodie@example.fr"},
		// No provider-specific folding: these stay distinct contacts.
		{"a.d.a+news@gmail.com", "a.d.a+news@gmail.com"},
	}
	for _, tt := range tests {
		if got := contactkey.Normalise(tt.in); got != tt.want {
			t.Errorf("Normalise(%q) = %q, want %q", tt.in, got, tt.want)
		}
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
	if _, err := k.Key(" "); err != consent.ErrContactEmpty {
		t.Errorf("Key(blank) err = %v, want ErrContactEmpty", err)
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

func FuzzNormalise(f *testing.F) {
	for _, s := range []string{"Ada@Example.com", " zoe\u0308@x ", "İSTANBUL", "ß", "\u212b", "", "\u03aa\u0301"} {
		f.Add(s)
	}
	k, _ := contactkey.New(secret)
	f.Fuzz(func(t *testing.T, s string) {
		n := contactkey.Normalise(s)
		// Idempotent: a normalised contact is its own normal form, so keys
		// are stable however often a contact passes through.
		if again := contactkey.Normalise(n); again != n {
			t.Fatalf("Normalise not idempotent: %q -> %q -> %q", s, n, again)
		}
		k1, err1 := k.Key(s)
		if err1 != nil {
			return
		}
		if err := consent.CheckContact(n); err != nil {
			return // normalising may lengthen a valid contact past the limit
		}
		if k2, _ := k.Key(n); k1 != k2 {
			t.Fatalf("Key(%q) != Key(Normalise(%q))", s, s)
		}
	})
}

func BenchmarkKey(b *testing.B) {
	k, _ := contactkey.New(secret)
	b.ReportAllocs()
	for b.Loop() {
		k.Key("Ada.Lovelace@Example.com")
	}
}
