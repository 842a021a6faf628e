// Package contactkey turns a contact as a sender knows it into the
// pseudonymous consent.Key that is stored, cached and logged in its place:
// the keyed hash of the contact's canonical form (internal/identifier), by
// the store's scheme. It owns the secret, the scheme and the parsing
// options, so every entry point keys alike.
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
	"sync"

	"github.com/consentd/consentd/consent"
	"github.com/consentd/consentd/internal/identifier"
)

// SecretBytes is the length of a generated secret.
const SecretBytes = 32

// Scheme names how a canonical identifier and the secret become a key. A
// store records the scheme its keys were made with (its key id), so a
// store keeps its keys when the default changes, and a rotation can be
// told apart later.
type Scheme string

// SchemeHMACSHA256 is HMAC-SHA256(secret, canonical identifier): every
// store written before issue 17, whose keys for contacts already written
// canonically are these same bytes.
const SchemeHMACSHA256 Scheme = "hmac-sha256"

// NewStoreScheme is the scheme a brand-new store gets. Keyed BLAKE3 was
// measured against HMAC-SHA256 on the warm FilterAudience path and did not
// earn a second scheme (docs/benchmarks.md, "Contact key scheme").
const NewStoreScheme = SchemeHMACSHA256

// knownBits sizes the memo of phone numbers already parsed
// (identifier.Known): 2^18 numbers in 2 MiB, an audience's worth.
const knownBits = 18

// Keyer keys contacts with one secret. It is safe for concurrent use.
type Keyer struct {
	scheme Scheme
	parser identifier.Parser
	pool   sync.Pool // of *state: hmac.New allocates, the hot path must not
}

// state is one HMAC with scratch space that outlives calls, so nothing
// escapes through the hash.Hash interface per call.
type state struct {
	h   hash.Hash
	buf []byte
	sum []byte
}

// Option sets how a Keyer keys.
type Option func(*Keyer)

// WithScheme sets the scheme (default SchemeHMACSHA256): the one the store
// records.
func WithScheme(s Scheme) Option { return func(k *Keyer) { k.scheme = s } }

// WithDefaultRegion sets the region (a CLDR code, GB) phone numbers written
// without + and a country code are read in; without it they are refused.
func WithDefaultRegion(region string) Option {
	return func(k *Keyer) { k.parser.DefaultRegion = region }
}

// New returns a Keyer for secret, which must be at least 16 bytes.
func New(secret []byte, opts ...Option) (*Keyer, error) {
	if len(secret) < 16 {
		return nil, fmt.Errorf("contactkey: secret is %d bytes, want at least 16", len(secret))
	}
	k := &Keyer{scheme: SchemeHMACSHA256, parser: identifier.Parser{Known: identifier.NewKnown(knownBits)}}
	for _, o := range opts {
		o(k)
	}
	if k.scheme != SchemeHMACSHA256 {
		return nil, fmt.Errorf("contactkey: unknown key scheme %q (known: %s)", k.scheme, SchemeHMACSHA256)
	}
	if r := k.parser.DefaultRegion; r != "" {
		if err := identifier.CheckRegion(r); err != nil {
			return nil, fmt.Errorf("default region %q: %w", r, err)
		}
	}
	s := append([]byte(nil), secret...)
	k.pool.New = func() any {
		return &state{h: hmac.New(sha256.New, s), buf: make([]byte, 0, consent.MaxContactBytes), sum: make([]byte, 0, sha256.Size)}
	}
	return k, nil
}

// Scheme is the scheme k keys by.
func (k *Keyer) Scheme() Scheme { return k.scheme }

// Check returns a value derived from the secret that reveals nothing about
// it, so processes that must share a secret can compare theirs.
func (k *Keyer) Check() string {
	st := k.pool.Get().(*state)
	defer k.pool.Put(st)
	st.h.Reset()
	st.h.Write([]byte("consentd secret check v1"))
	return hex.EncodeToString(st.h.Sum(nil))
}

// Key parses contact (internal/identifier) and returns the key of its
// canonical form. The error is the parser's: a problem text the caller
// prefixes with the field.
func (k *Keyer) Key(contact string) (consent.Key, error) {
	key, _, err := k.Identify(contact)
	return key, err
}

// Identify is Key that also says what kind of identifier contact is.
func (k *Keyer) Identify(contact string) (consent.Key, consent.IDKind, error) {
	id, err := k.parser.Parse(contact)
	if err != nil {
		return consent.Key{}, consent.IDUnknown, err
	}
	st := k.pool.Get().(*state)
	st.h.Reset()
	// Through a buffer kept in the state: a string converted for Write
	// would escape through the interface, an allocation per contact.
	st.buf = append(st.buf[:0], id.Canonical...)
	st.h.Write(st.buf)
	st.sum = st.h.Sum(st.sum[:0])
	var key consent.Key
	copy(key[:], st.sum)
	k.pool.Put(st)
	return key, id.Kind, nil
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
