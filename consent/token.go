package consent

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
)

// ConsistencyToken names a point in a store's history: the sequence number a write got
// in its partition. A Check that carries a write's token never sees data
// older than that write.
type ConsistencyToken struct {
	Partition uint32
	Seq       uint64
}

// IsZero reports whether t names no write.
func (t ConsistencyToken) IsZero() bool { return t == ConsistencyToken{} }

const tokenVersion = 1

// String encodes t as an opaque, URL-safe string; the zero token is "".
func (t ConsistencyToken) String() string {
	if t.IsZero() {
		return ""
	}
	// Encoded on the stack and copied once into the string: every Check
	// answer carries a token.
	var raw [1 + 2*binary.MaxVarintLen64]byte
	b := append(raw[:0], tokenVersion)
	b = binary.AppendUvarint(b, uint64(t.Partition))
	b = binary.AppendUvarint(b, t.Seq)
	var enc [32]byte // base64 of up to 21 bytes is 28
	return string(base64.RawURLEncoding.AppendEncode(enc[:0], b))
}

var errToken = errors.New("is not a token issued by consentd")

// ParseConsistencyToken decodes a token made by Token.String.
func ParseConsistencyToken(s string) (ConsistencyToken, error) {
	if s == "" || len(s) > 64 {
		return ConsistencyToken{}, errToken
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) < 3 || b[0] != tokenVersion {
		return ConsistencyToken{}, errToken
	}
	b = b[1:]
	p, n := binary.Uvarint(b)
	if n <= 0 || p > 1<<32-1 {
		return ConsistencyToken{}, errToken
	}
	b = b[n:]
	seq, n := binary.Uvarint(b)
	if n <= 0 || n != len(b) || seq == 0 {
		return ConsistencyToken{}, errToken
	}
	tok := ConsistencyToken{Partition: uint32(p), Seq: seq}
	// Only the canonical spelling is a token: base64 tolerates stray bits and
	// varints tolerate padding, and two spellings of one token would be two
	// page tokens or cache keys for the same thing.
	if tok.String() != s {
		return ConsistencyToken{}, errToken
	}
	return tok, nil
}

// Consistency says how fresh the record behind an answer must be.
type Consistency struct {
	Mode  ConsistencyMode
	Token ConsistencyToken // for AtLeastAsFresh
}

// ConsistencyMode is the kind of freshness asked for.
type ConsistencyMode uint8

// The modes.
const (
	// MinimizeLatency answers from the cache while it is within its lease.
	MinimizeLatency ConsistencyMode = iota
	// AtLeastAsFresh answers from data no older than Consistency.Token.
	AtLeastAsFresh
	// FullyConsistent reads the store.
	FullyConsistent
)
