// Package unsubscribe makes and checks one-click unsubscribe tokens (RFC
// 8058): opaque, signed, expiring references to one contact and one purpose,
// carried in the List-Unsubscribe URL of every message. A token names the
// contact only by its keyed hash (consent.Key), never the contact itself.
//
// A token is the unpadded base64url encoding of
//
//	version (1 byte: 1) | key (32 bytes) | expiry (8 bytes, Unix seconds, big-endian)
//	| purpose length (1 byte) | purpose | MAC (32 bytes)
//
// where MAC is HMAC-SHA256 of everything before it, under a key derived from
// consentd's secret for this use alone. Only the canonical encoding verifies,
// so one token has one spelling (the server derives a request id from it).
//
// The package imports only the standard library and package consent.
package unsubscribe

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/consentd/consentd/consent"
)

// DefaultTTL is how long a token stays valid by default: a year. Links live
// in old emails that people open months later, and withdrawing consent must
// be as easy as granting it, so an old link has to keep working; the expiry
// only bounds how long a leaked link can be replayed, and replaying it can
// only withdraw.
const DefaultTTL = 365 * 24 * time.Hour

// MaxPurposeBytes bounds the purpose a token names; registry names are
// shorter.
const MaxPurposeBytes = 64

// Errors from Verify. ErrInvalid tells nothing about what was wrong: a
// malformed, forged and tampered token look the same to the sender of one.
var (
	// ErrInvalid: the token was not made by this secret as it stands:
	// malformed, forged or tampered with (HTTP 403). Its claims mean nothing.
	ErrInvalid = errors.New("not a valid unsubscribe token")
	// ErrExpired: the token is genuine but past its expiry (HTTP 410).
	ErrExpired = errors.New("unsubscribe token has expired")
)

const (
	version  = 1
	keySize  = len(consent.Key{})
	headSize = 1 + keySize + 8 + 1 // up to and including the purpose length
	macSize  = sha256.Size
	// maxExpiry is 9999-12-31T23:59:59Z, the last second a protobuf
	// Timestamp can carry.
	maxExpiry = 253402300799
)

// maxTokenLen is the longest token, checked before decoding anything.
var maxTokenLen = b64.EncodedLen(headSize + MaxPurposeBytes + macSize)

// b64 refuses non-zero padding bits; Verify also refuses the line
// breaks base64 decoders skip, so every token has one spelling.
var b64 = base64.RawURLEncoding.Strict()

// label is what the MAC key is derived from. Contact keys are
// HMAC(secret, canonical contact), and they are stored and logged, so the
// label must never be a canonical contact: its NUL byte is a control
// character, which no contact may contain (internal/identifier).
const label = "\x00consentd one-click unsubscribe v1"

// Token is what a token refers to.
type Token struct {
	Key     consent.Key
	Purpose string
	Expires time.Time // whole seconds; the token is void from this instant
}

// Signer mints and verifies tokens with one secret. It is safe for
// concurrent use.
type Signer struct {
	key []byte // HMAC(secret, label): never the secret itself
}

// NewSigner returns a Signer for consentd's secret (at least 16 bytes, like
// contact keys). Sidecars with the same secret verify each other's tokens.
func NewSigner(secret []byte) (*Signer, error) {
	if len(secret) < 16 {
		return nil, fmt.Errorf("unsubscribe: secret is %d bytes, want at least 16", len(secret))
	}
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(label))
	return &Signer{key: m.Sum(nil)}, nil
}

// Mint returns the token for t. Expires is truncated to whole seconds.
func (s *Signer) Mint(t Token) (string, error) {
	switch exp := t.Expires.Unix(); {
	case t.Purpose == "" || len(t.Purpose) > MaxPurposeBytes:
		return "", fmt.Errorf("unsubscribe: purpose must be 1 to %d bytes, got %d", MaxPurposeBytes, len(t.Purpose))
	case exp < 1 || exp > maxExpiry:
		return "", fmt.Errorf("unsubscribe: expiry %v is out of range", t.Expires)
	}
	b := body(t)
	return b64.EncodeToString(s.sum(b, b)), nil
}

// body is the signed part of the token for t.
func body(t Token) []byte {
	b := make([]byte, 0, headSize+len(t.Purpose)+macSize)
	b = append(b, version)
	b = append(b, t.Key[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(t.Expires.Unix()))
	b = append(b, byte(len(t.Purpose)))
	return append(b, t.Purpose...)
}

// sum appends the MAC of msg to dst.
func (s *Signer) sum(dst, msg []byte) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write(msg)
	return m.Sum(dst)
}

// Verify returns what token refers to, if this secret signed it and it has
// not expired at now. A malformed, forged or tampered token is ErrInvalid,
// whatever expiry it claims; a genuine token past its expiry is ErrExpired,
// returned with what it refers to. MACs are compared in constant time.
func (s *Signer) Verify(token string, now time.Time) (Token, error) {
	t, signed, mac, err := parse(token)
	if err != nil {
		return Token{}, err
	}
	if !hmac.Equal(mac, s.sum(nil, signed)) {
		return Token{}, ErrInvalid
	}
	if !now.Before(t.Expires) {
		return t, ErrExpired
	}
	return t, nil
}

// parse splits a token into its claims, the bytes they were signed as and
// the MAC, checking only its shape: nothing it returns is trusted yet.
func parse(s string) (t Token, signed, mac []byte, err error) {
	if len(s) > maxTokenLen {
		return Token{}, nil, nil, ErrInvalid
	}
	b, err := b64.DecodeString(s)
	if err != nil || b64.EncodedLen(len(b)) != len(s) || len(b) < headSize || b[0] != version {
		return Token{}, nil, nil, ErrInvalid
	}
	n := int(b[headSize-1])
	if n == 0 || n > MaxPurposeBytes || len(b) != headSize+n+macSize {
		return Token{}, nil, nil, ErrInvalid
	}
	exp := binary.BigEndian.Uint64(b[1+keySize:])
	if exp < 1 || exp > maxExpiry {
		return Token{}, nil, nil, ErrInvalid
	}
	copy(t.Key[:], b[1:1+keySize])
	t.Expires = time.Unix(int64(exp), 0).UTC()
	t.Purpose = string(b[headSize : headSize+n])
	return t, b[:headSize+n], b[headSize+n:], nil
}
