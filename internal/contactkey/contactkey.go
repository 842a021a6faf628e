// Package contactkey turns a contact as a sender knows it into the
// pseudonymous consent.Key that is stored, cached and logged in its place:
// HMAC-SHA256(secret, normalise(contact)). It owns the secret and the
// normalisation, so both can change in one place.
package contactkey

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/text/unicode/norm"

	"github.com/consentd/consentd/consent"
)

// SecretBytes is the length of a generated secret.
const SecretBytes = 32

// Keyer keys contacts with one secret. It is safe for concurrent use.
type Keyer struct {
	pool sync.Pool // of *state: hmac.New allocates, the hot path must not
}

// state is one HMAC with scratch space that outlives calls, so nothing
// escapes through the hash.Hash interface per call.
type state struct {
	h   hash.Hash
	buf []byte
	sum []byte
}

// New returns a Keyer for secret, which must be at least 16 bytes.
func New(secret []byte) (*Keyer, error) {
	if len(secret) < 16 {
		return nil, fmt.Errorf("contactkey: secret is %d bytes, want at least 16", len(secret))
	}
	s := append([]byte(nil), secret...)
	k := &Keyer{}
	k.pool.New = func() any {
		return &state{h: hmac.New(sha256.New, s), buf: make([]byte, 0, 2*consent.MaxContactBytes), sum: make([]byte, 0, sha256.Size)}
	}
	return k, nil
}

// Check returns a value derived from the secret that reveals nothing about
// it, so processes that must share a secret can compare theirs.
func (k *Keyer) Check() string {
	st := k.pool.Get().(*state)
	defer k.pool.Put(st)
	st.h.Reset()
	st.h.Write([]byte("consentd secret check v1"))
	return hex.EncodeToString(st.h.Sum(nil))
}

// Normalise returns the canonical form of contact: trimmed, lower case, NFC.
// NFC comes last because lower-casing can undo it (Greek with combining
// marks), and the result must be its own normal form.
// It folds nothing provider-specific (no dot or plus rules): two spellings a
// mail server might treat alike stay two contacts.
func Normalise(contact string) string {
	return norm.NFC.String(strings.ToLower(strings.TrimSpace(contact)))
}

// Key checks contact (see consent.CheckContact) and returns its key.
func (k *Keyer) Key(contact string) (consent.Key, error) {
	if err := consent.CheckContact(contact); err != nil {
		return consent.Key{}, err
	}
	n := Normalise(contact)
	st := k.pool.Get().(*state)
	st.h.Reset()
	st.buf = append(st.buf[:0], n...)
	st.h.Write(st.buf)
	st.sum = st.h.Sum(st.sum[:0])
	var key consent.Key
	copy(key[:], st.sum)
	k.pool.Put(st)
	return key, nil
}

// Identify is Key, and also says what kind of identifier contact is (for
// links, which keep the kind beside the key). consent.CheckContact admits
// email addresses and E.164 numbers only, told apart by the @.
func (k *Keyer) Identify(contact string) (consent.Key, consent.IDKind, error) {
	key, err := k.Key(contact)
	switch {
	case err != nil:
		return key, consent.IDUnknown, err
	case strings.Contains(contact, "@"):
		return key, consent.IDEmail, nil
	}
	return key, consent.IDPhone, nil
}

// LoadOrCreateSecret reads the secret at path, creating a random one (0600)
// when the file does not exist. An embedded deployment keeps it beside its
// data; losing it makes every stored key unreachable.
func LoadOrCreateSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		if len(b) < 16 {
			return nil, fmt.Errorf("secret %s: %d bytes, want at least 16", path, len(b))
		}
		return b, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("secret: %w", err)
	}
	secret := make([]byte, SecretBytes)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("secret: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("secret: %w", err)
	}
	// Write a temporary file and link it into place: the secret appears whole
	// or not at all, and of two processes starting at once only one wins.
	f, err := os.CreateTemp(filepath.Dir(path), ".secret-*")
	if err != nil {
		return nil, fmt.Errorf("secret: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(secret); err != nil {
		f.Close()
		return nil, fmt.Errorf("secret: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, fmt.Errorf("secret: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("secret: %w", err)
	}
	if err := os.Link(f.Name(), path); errors.Is(err, fs.ErrExist) {
		return LoadOrCreateSecret(path)
	} else if err != nil {
		return nil, fmt.Errorf("secret: %w", err)
	}
	return secret, nil
}
