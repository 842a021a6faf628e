package consent

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
)

// ConsistencyToken names a point in a store's history: the sequence number a
// write got in its partition. A Check that carries a write's token never sees
// data older than that write.
//
// Its text (String) is opaque to callers: they pass back what an answer
// carried, unchanged. Tag is what makes it a token consentd issued: a keyed
// MAC over the partition and sequence under a key of the store's secret and
// identity (internal/consistencytoken), set on every token an answer carries
// and checked on every token a request brings, so a made-up, altered or
// another store's token is refused. Stores return tokens without a tag;
// parsing checks only the syntax, so a client can keep tokens it cannot
// verify.
type ConsistencyToken struct {
	Partition uint32
	Seq       uint64
	Tag       uint64
}

// IsZero reports whether t names no write.
func (t ConsistencyToken) IsZero() bool { return t == ConsistencyToken{} }

// tokenVersion 2 added the tag: a version 1 token (no tag) is refused.
const tokenVersion = 2

// tagBytes is the width of the tag in the text: 64 bits, which no caller
// guesses in the requests it can make.
const tagBytes = 8

// String encodes t as an opaque, URL-safe string; the zero token is "".
func (t ConsistencyToken) String() string {
	if t.IsZero() {
		return ""
	}
	// Encoded on the stack and copied once into the string: every Check
	// answer carries a token.
	var raw [1 + 2*binary.MaxVarintLen64 + tagBytes]byte
	b := append(raw[:0], tokenVersion)
	b = binary.AppendUvarint(b, uint64(t.Partition))
	b = binary.AppendUvarint(b, t.Seq)
	b = binary.BigEndian.AppendUint64(b, t.Tag)
	var enc [48]byte // base64 of up to 29 bytes is 39
	return string(base64.RawURLEncoding.AppendEncode(enc[:0], b))
}

var errToken = errors.New("not a consistency token")

// ParseConsistencyToken decodes the text String makes. It checks the
// syntax only: whether consentd issued the token is for the holder of the
// key to say.
func ParseConsistencyToken(s string) (ConsistencyToken, error) {
	if s == "" || len(s) > 64 {
		return ConsistencyToken{}, errToken
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) < 3+tagBytes || b[0] != tokenVersion {
		return ConsistencyToken{}, errToken
	}
	tag := binary.BigEndian.Uint64(b[len(b)-tagBytes:])
	b = b[1 : len(b)-tagBytes]
	p, n := binary.Uvarint(b)
	if n <= 0 || p > 1<<32-1 {
		return ConsistencyToken{}, errToken
	}
	b = b[n:]
	seq, n := binary.Uvarint(b)
	if n <= 0 || n != len(b) || seq == 0 {
		return ConsistencyToken{}, errToken
	}
	tok := ConsistencyToken{Partition: uint32(p), Seq: seq, Tag: tag}
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
