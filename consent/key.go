package consent

import (
	"encoding/binary"
	"encoding/hex"
)

// Key identifies a contact without naming it: the keyed hash (the store's
// scheme, HMAC-SHA256) of the contact's canonical form
// (internal/identifier). Only keys are stored, cached or logged.
type Key [32]byte

// String returns the key in hex, the only form of a contact that may be logged.
func (k Key) String() string { return hex.EncodeToString(k[:]) }

// Uint64 returns the first eight bytes of the key, a well-mixed hash for
// in-memory indexes. Callers must still compare the full key.
func (k Key) Uint64() uint64 { return binary.BigEndian.Uint64(k[:8]) }

// Partition maps the key onto one of n partitions (n > 0).
func (k Key) Partition(n uint32) uint32 { return binary.BigEndian.Uint32(k[8:12]) % n }
