package unsubscribe_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/consentd/consentd/consent"
	"github.com/consentd/consentd/internal/contactkey"
	"github.com/consentd/consentd/internal/unsubscribe"
)

var (
	secret = []byte("unsubscribe test secret 0123456789")
	now    = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
)

func signer(t *testing.T, secret []byte) *unsubscribe.Signer {
	t.Helper()
	s, err := unsubscribe.NewSigner(secret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func contactKey(t *testing.T, contact string) consent.Key {
	t.Helper()
	k, err := contactkey.New(secret)
	if err != nil {
		t.Fatal(err)
	}
	key, err := k.Key(contact)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func mint(t *testing.T, s *unsubscribe.Signer, tok unsubscribe.Token) string {
	t.Helper()
	out, err := s.Mint(tok)
	if err != nil {
		t.Fatalf("Mint(%+v): %v", tok, err)
	}
	return out
}

func TestRoundTrip(t *testing.T) {
	s := signer(t, secret)
	for _, want := range []unsubscribe.Token{
		{Key: contactKey(t, "ada@example.com"), Purpose: "email_marketing", Expires: now.Add(unsubscribe.DefaultTTL)},
		{Key: consent.Key{}, Purpose: "x", Expires: time.Unix(1, 0).UTC()},
		{Key: contactKey(t, "bo@example.com"), Purpose: strings.Repeat("p", unsubscribe.MaxPurposeBytes), Expires: time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)},
	} {
		tok := mint(t, s, want)
		if strings.ContainsAny(tok, "=+/") || strings.Contains(tok, "example") {
			t.Errorf("token %q is not opaque unpadded base64url", tok)
		}
		got, err := s.Verify(tok, want.Expires.Add(-time.Second))
		if err != nil || got != want {
			t.Errorf("Verify(Mint(%+v)) = %+v, %v", want, got, err)
		}
		if again := mint(t, s, want); again != tok {
			t.Errorf("Mint is not deterministic: %q then %q", tok, again)
		}
	}
}

func TestExpiry(t *testing.T) {
	s := signer(t, secret)
	// Sub-second expiries are truncated: the token holds whole seconds.
	want := unsubscribe.Token{Key: contactKey(t, "ada@example.com"), Purpose: "email_marketing", Expires: now.Add(time.Hour)}
	tok := mint(t, s, unsubscribe.Token{Key: want.Key, Purpose: want.Purpose, Expires: want.Expires.Add(900 * time.Millisecond)})
	tests := []struct {
		at   time.Time
		want error
	}{
		{now, nil},
		{want.Expires.Add(-time.Nanosecond), nil},
		{want.Expires, unsubscribe.ErrExpired},
		{want.Expires.Add(24 * time.Hour), unsubscribe.ErrExpired},
	}
	for _, tt := range tests {
		got, err := s.Verify(tok, tt.at)
		if !errors.Is(err, tt.want) || got != want {
			t.Errorf("Verify at %v = %+v, %v; want %+v, %v", tt.at, got, err, want, tt.want)
		}
	}
}

// TestRefusesForgeries: whatever is wrong with a token, Verify says
// ErrInvalid (403), never ErrExpired (410) and never a claim.
func TestRefusesForgeries(t *testing.T) {
	s := signer(t, secret)
	genuine := unsubscribe.Token{Key: contactKey(t, "ada@example.com"), Purpose: "email_marketing", Expires: now.Add(time.Hour)}
	tok := mint(t, s, genuine)
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding.EncodeToString
	with := func(f func(b []byte) []byte) string {
		return enc(f(append([]byte(nil), raw...)))
	}
	other := signer(t, []byte("another deployment's secret 0123"))
	tests := []struct {
		name, token string
	}{
		{"empty", ""},
		{"not base64", "!!!!"},
		{"padded", tok + "="},
		{"standard alphabet", base64.RawStdEncoding.EncodeToString(append(raw, 0xfb))},
		{"line break inside", tok[:10] + "\n" + tok[10:]},
		{"stray bits in the last character", tok[:len(tok)-1] + string(tok[len(tok)-1]+1)},
		{"truncated", tok[:len(tok)-4]},
		{"one byte short", with(func(b []byte) []byte { return b[:len(b)-1] })},
		{"one byte extra", with(func(b []byte) []byte { return append(b, 0) })},
		{"only the body", with(func(b []byte) []byte { return b[:len(b)-32] })},
		{"wrong version", with(func(b []byte) []byte { b[0] = 2; return b })},
		{"purpose length zero", with(func(b []byte) []byte { b[41] = 0; return b })},
		{"purpose length past the end", with(func(b []byte) []byte { b[41] = 200; return b })},
		{"too long", strings.Repeat("A", 4096)},
		{"signed by another secret", mint(t, other, genuine)},
		{"expired and signed by another secret", mint(t, other, unsubscribe.Token{Key: genuine.Key, Purpose: genuine.Purpose, Expires: now.Add(-time.Hour)})},
		{"MAC zeroed", with(func(b []byte) []byte { clear(b[len(b)-32:]); return b })},
	}
	// Every single-bit change anywhere, the expiry pushed forward and the
	// purpose or contact swapped included, breaks the MAC.
	for i := range raw {
		for bit := range 8 {
			tests = append(tests, struct{ name, token string }{
				name:  "bit flipped",
				token: with(func(b []byte) []byte { b[i] ^= 1 << bit; return b }),
			})
		}
	}
	for _, tt := range tests {
		got, err := s.Verify(tt.token, now)
		if !errors.Is(err, unsubscribe.ErrInvalid) || got != (unsubscribe.Token{}) {
			t.Errorf("%s: Verify(%q) = %+v, %v; want ErrInvalid", tt.name, tt.token, got, err)
		}
	}
	// A forged token past its claimed expiry is still a forgery, not "expired".
	if _, err := other.Verify(tok, now.Add(48*time.Hour)); !errors.Is(err, unsubscribe.ErrInvalid) {
		t.Errorf("expired token of another secret: %v, want ErrInvalid", err)
	}
}

func TestSameSecretVerifiesAcrossSigners(t *testing.T) {
	a, b := signer(t, secret), signer(t, append([]byte(nil), secret...))
	want := unsubscribe.Token{Key: contactKey(t, "ada@example.com"), Purpose: "ad_retargeting", Expires: now.Add(time.Hour)}
	if got, err := b.Verify(mint(t, a, want), now); err != nil || got != want {
		t.Errorf("sidecar B on sidecar A's token: %+v, %v", got, err)
	}
}

func TestMintRefuses(t *testing.T) {
	s := signer(t, secret)
	key := contactKey(t, "ada@example.com")
	for _, tok := range []unsubscribe.Token{
		{Key: key, Purpose: "", Expires: now},
		{Key: key, Purpose: strings.Repeat("p", unsubscribe.MaxPurposeBytes+1), Expires: now},
		{Key: key, Purpose: "email_marketing"},
		{Key: key, Purpose: "email_marketing", Expires: time.Unix(0, 0)},
		{Key: key, Purpose: "email_marketing", Expires: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
	} {
		if got, err := s.Mint(tok); err == nil {
			t.Errorf("Mint(%+v) = %q, want an error", tok, got)
		}
	}
}

func TestNewSignerRefusesShortSecret(t *testing.T) {
	if _, err := unsubscribe.NewSigner([]byte("short")); err == nil {
		t.Error("NewSigner accepted a 5-byte secret")
	}
}

// TestKeyIsNotAContactKey: the MAC key is derived from the secret the same
// way contact keys are (HMAC), so no contact may spell its label, or that
// contact's key, which is stored and logged, would be the MAC key.
func TestKeyIsNotAContactKey(t *testing.T) {
	k, err := contactkey.New(secret)
	if err != nil {
		t.Fatal(err)
	}
	for _, contact := range []string{"\x00consentd one-click unsubscribe v1", "consentd one-click unsubscribe v1"} {
		key, err := k.Key(contact)
		if err != nil {
			continue // refused: it can never be keyed
		}
		// Keyable: then a token MACed with its key must not verify.
		forged := unsubscribe.Token{Key: key, Purpose: "email_marketing", Expires: now.Add(time.Hour)}
		tok := mint(t, signer(t, secret), forged)
		raw, _ := base64.RawURLEncoding.DecodeString(tok)
		signed := raw[:len(raw)-32]
		mac := hmacSHA256(key[:], signed)
		if _, err := signer(t, secret).Verify(base64.RawURLEncoding.EncodeToString(append(signed, mac...)), now); err == nil {
			t.Errorf("the key of contact %q signs valid tokens", contact)
		}
	}
}

func hmacSHA256(key, msg []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	return m.Sum(nil)
}
