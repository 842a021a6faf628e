// Package consistencytoken issues the consistency tokens consentd's answers
// carry and recognises them when requests bring them back, so that a token
// consentd never issued (made up, altered, from an older version, from
// another store) is refused instead of read as a point in this store's
// history.
//
// A token's tag is a keyed MAC over its partition and sequence, truncated
// to 64 bits, under a key derived from consentd's secret and the store's
// id: sidecars sharing a store (and so its secret) recognise each other's
// tokens; a store wiped and made again has a new id, and the old store's
// tokens are refused. Tokens tell callers nothing secret and grant nothing:
// the tag keeps a request from naming a point in history it was never
// shown.
//
// The MAC is HMAC-SHA256, as for the other keys derived from the secret.
// Keyed BLAKE3 tags in about half the time, but either is under 1% of a
// Check served from the cache (BenchmarkCheckWarm could not tell them
// apart): not worth a dependency.
package consistencytoken

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"hash"
	"sync"

	"github.com/consentd/consentd/consent"
)

// label separates this key from the others derived from the secret (chain,
// unsubscribe); its version changes with the tag's construction. Contact
// keys are HMAC(secret, canonical contact), stored and logged, so the
// key's input must never be a contact: it holds a NUL byte (between the
// label and the store id), a control character no contact may contain
// (internal/identifier).
const label = "consentd consistency token v2"

// Issuer tags and recognises one store's consistency tokens. It is safe for
// concurrent use and allocates nothing per token.
type Issuer struct {
	pool sync.Pool // of *mac: hmac.New allocates, the hot path must not
}

// mac is one keyed hash with scratch space that outlives calls, so nothing
// escapes through the hash.Hash interface per call.
type mac struct {
	h   hash.Hash
	msg [12]byte
	sum []byte
}

// NewIssuer returns the Issuer of the store with id storeID ("" for a store
// without one) under consentd's secret, which must be at least 16 bytes.
func NewIssuer(secret []byte, storeID string) (*Issuer, error) {
	if len(secret) < 16 {
		return nil, fmt.Errorf("consistencytoken: secret is %d bytes, want at least 16", len(secret))
	}
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(label))
	m.Write([]byte{0})
	m.Write([]byte(storeID))
	key := m.Sum(nil)
	i := &Issuer{}
	i.pool.New = func() any {
		return &mac{h: hmac.New(sha256.New, key), sum: make([]byte, 0, sha256.Size)}
	}
	return i, nil
}

// Issue returns t with its tag, as an answer carries it; the zero token
// stays zero (it names no write).
func (i *Issuer) Issue(t consent.ConsistencyToken) consent.ConsistencyToken {
	if t.IsZero() {
		return t
	}
	t.Tag = i.tag(t.Partition, t.Seq)
	return t
}

// Issued reports whether t, as a request brought it, is a token Issue
// returned: its tag is the one this store's key gives.
func (i *Issuer) Issued(t consent.ConsistencyToken) bool {
	if t.IsZero() {
		return false
	}
	var got, want [8]byte
	binary.BigEndian.PutUint64(got[:], t.Tag)
	binary.BigEndian.PutUint64(want[:], i.tag(t.Partition, t.Seq))
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1
}

func (i *Issuer) tag(partition uint32, seq uint64) uint64 {
	m := i.pool.Get().(*mac)
	binary.BigEndian.PutUint32(m.msg[:4], partition)
	binary.BigEndian.PutUint64(m.msg[4:], seq)
	m.h.Reset()
	m.h.Write(m.msg[:])
	m.sum = m.h.Sum(m.sum[:0])
	t := binary.BigEndian.Uint64(m.sum)
	i.pool.Put(m)
	return t
}
