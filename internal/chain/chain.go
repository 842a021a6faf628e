// Package chain makes the consent history tamper-evident. Every stored
// history entry names the link of the entry before it in its partition, and
// its own link is a keyed hash (HMAC-SHA256 with a key derived from
// consentd's secret) over its partition, sequence number, contact key and
// bytes. Whoever edits, reorders or deletes an entry without the secret
// breaks the chain at that point, and Verify says where.
//
// Erasure must remove a contact's entries and still leave a chain that
// verifies: the erasure's own entry carries a tombstone (sequence number and
// link) for each entry it removed. Tombstones hold no personal data (a link
// is a keyed hash) and are covered by the erasure entry's link, so they are
// signed like everything else: an entry deleted without one is tampering,
// one deleted by an erasure is not.
//
// The chain cannot tell a consistent rollback (the newest entries and the
// partition head removed together, the head set back to an older link) from
// a history that never had them; Verify reports each partition's head so it
// can be kept elsewhere and compared, and the Redis store checks the change
// stream too.
package chain

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
)

// label separates the chain key from every other key derived from the
// secret (contact keys, unsubscribe links).
const label = "consentd history chain v1"

// entryV1 starts every entry encoding, so the layout can change.
const entryV1 = 1

// Link is the keyed hash of one history entry. The zero Link stands before
// the first entry of a partition.
type Link [sha256.Size]byte

func (l Link) String() string { return hex.EncodeToString(l[:]) }

// Tombstone is the place in the chain of an entry that an erasure removed:
// its link and the link it followed, so the chain can be checked across it.
type Tombstone struct {
	Seq        uint64
	Prev, Link Link
}

// Key seals entries. It is safe for concurrent use.
type Key struct {
	key []byte // HMAC(secret, label): never the secret itself
}

// NewKey derives the chain key from consentd's secret (at least 16 bytes,
// like contact keys). Sidecars sharing a store share the secret, so they
// extend each other's chains.
func NewKey(secret []byte) (*Key, error) {
	if len(secret) < 16 {
		return nil, fmt.Errorf("chain: secret is %d bytes, want at least 16", len(secret))
	}
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(label))
	return &Key{key: m.Sum(nil)}, nil
}

// Seal returns the link of entry, stored as event seq of partition for the
// contact whose key is contact.
func (k *Key) Seal(partition uint32, seq uint64, contact [32]byte, entry []byte) Link {
	return k.Sealer().Seal(partition, seq, contact, entry)
}

// Sealer seals many entries with one key schedule: a bulk write seals one
// entry per event, and setting up the HMAC is half of sealing a short one.
// It is not safe for concurrent use.
type Sealer struct{ m hash.Hash }

// Sealer returns a Sealer for k.
func (k *Key) Sealer() *Sealer { return &Sealer{m: hmac.New(sha256.New, k.key)} }

// Seal is Key.Seal.
func (s *Sealer) Seal(partition uint32, seq uint64, contact [32]byte, entry []byte) Link {
	s.m.Reset()
	var head [4 + 8]byte
	binary.BigEndian.PutUint32(head[:4], partition)
	binary.BigEndian.PutUint64(head[4:], seq)
	s.m.Write(head[:])
	s.m.Write(contact[:])
	s.m.Write(entry)
	var l Link
	s.m.Sum(l[:0])
	return l
}

// Encode appends to b the entry that stores event (its encoding, opaque
// here) after the entry whose link is prev, with the tombstones of the
// entries an erasure removed.
func Encode(b []byte, prev Link, tombs []Tombstone, event []byte) []byte {
	b = append(b, entryV1)
	b = append(b, prev[:]...)
	b = binary.AppendUvarint(b, uint64(len(tombs)))
	for _, t := range tombs {
		b = binary.AppendUvarint(b, t.Seq)
		b = append(b, t.Prev[:]...)
		b = append(b, t.Link[:]...)
	}
	return append(b, event...)
}

// ErrCorrupt is returned for bytes Encode did not make.
var ErrCorrupt = errors.New("chain: corrupt entry")

// Entry is a decoded entry. Event aliases the decoded bytes.
type Entry struct {
	Prev       Link
	Tombstones []Tombstone
	Event      []byte
}

// Decode decodes an entry made by Encode.
func Decode(b []byte) (Entry, error) {
	var e Entry
	if len(b) < 1+len(e.Prev) || b[0] != entryV1 {
		return e, ErrCorrupt
	}
	b = b[1+copy(e.Prev[:], b[1:]):]
	n, w := uvarint(b)
	// Each tombstone takes at least 65 bytes: a count beyond that is a lie,
	// not a reason to allocate.
	if w <= 0 || n > uint64(len(b))/65 {
		return e, ErrCorrupt
	}
	b = b[w:]
	if n > 0 {
		e.Tombstones = make([]Tombstone, n)
	}
	for i := range e.Tombstones {
		seq, w := uvarint(b)
		if w <= 0 || len(b)-w < 2*len(Link{}) {
			return Entry{}, ErrCorrupt
		}
		t := &e.Tombstones[i]
		t.Seq = seq
		b = b[w:]
		b = b[copy(t.Prev[:], b):]
		b = b[copy(t.Link[:], b):]
	}
	e.Event = b
	return e, nil
}

// uvarint is binary.Uvarint refusing the longer forms of a number, so that
// an entry has one encoding.
func uvarint(b []byte) (uint64, int) {
	n, w := binary.Uvarint(b)
	if w > 0 && w != len(binary.AppendUvarint(nil, n)) {
		return 0, 0
	}
	return n, w
}
