package consent

import (
	"encoding/binary"
	"encoding/hex"
	"time"
)

// Key identifies a contact without naming it: the keyed hash (HMAC-SHA256) of
// the normalised contact. Only keys are stored, cached or logged.
type Key [32]byte

// String returns the key in hex, the only form of a contact that may be logged.
func (k Key) String() string { return hex.EncodeToString(k[:]) }

// Uint64 returns the first eight bytes of the key, a well-mixed hash for
// in-memory indexes. Callers must still compare the full key.
func (k Key) Uint64() uint64 { return binary.BigEndian.Uint64(k[:8]) }

// Partition maps the key onto one of n partitions (n > 0).
func (k Key) Partition(n uint32) uint32 { return binary.BigEndian.Uint32(k[8:12]) % n }

// Method is how an affirmative yes was obtained, or, for the withdrawal-only
// MethodOneClickUnsubscribe, how a no was given. Values match consent.v1.Method.
type Method uint8

// The methods. MethodUnspecified is never consent.
const (
	MethodUnspecified Method = iota
	MethodCheckbox
	MethodButton
	MethodDropdown
	MethodAccountSettings
	MethodEmailReply
	MethodVerbal
	MethodPaperForm
	MethodDoubleOptIn
	// MethodOneClickUnsubscribe is a withdrawal through a one-click
	// unsubscribe link (RFC 8058). It records a no, never a yes.
	MethodOneClickUnsubscribe
	methodEnd
)

// Valid reports whether m is a known method other than MethodUnspecified.
func (m Method) Valid() bool { return m > MethodUnspecified && m < methodEnd }

// Affirmative reports whether m is a way of saying yes: the only methods a
// grant may record, and the only ones Decide accepts behind an ALLOW.
func (m Method) Affirmative() bool { return m.Valid() && m != MethodOneClickUnsubscribe }

// Source says where a yes came from. Values match consent.v1.Source.
type Source uint8

// The sources.
const (
	SourceUnspecified Source = iota
	SourceFirstParty
	SourceThirdParty
)

// EventKind says what an event did. Values match consent.v1.EventKind.
type EventKind uint8

// The event kinds.
const (
	EventUnspecified EventKind = iota
	EventGrant
	EventWithdraw
	EventErase
)

// Proof is what was recorded about one event: how, where from, on which
// notice, when, by whom, and a pointer to the evidence.
type Proof struct {
	Method        Method
	Source        Source
	ThirdParty    string
	EvidenceRef   string
	NoticeVersion string
	CapturedAt    time.Time // when the person acted
	ExpiresAt     time.Time // zero: no explicit end date
	Actor         string
	Bundled       bool      // one yes covered several purposes
	RecordedAt    time.Time // when consentd accepted it
}

// EffectiveAt is when a grant counts as given, for ordering it against other
// events: when the person acted, but never later than when consentd recorded
// it. A client clock running ahead (requests may claim up to a few minutes
// in the future) must not let a yes outrank a withdrawal made after it.
func (p *Proof) EffectiveAt() time.Time {
	if !p.RecordedAt.IsZero() && p.RecordedAt.Before(p.CapturedAt) {
		return p.RecordedAt
	}
	return p.CapturedAt
}

// Event is one entry of a contact's history.
type Event struct {
	Kind      EventKind
	Purposes  []string // empty on a withdrawal of every purpose and on erasure
	Proof     Proof
	RequestID string
	Token     Token // set by the store when the event is applied
}

// Write is one event for one contact, as handed to a store.
type Write struct {
	Key   Key
	Event Event
	// Fingerprint identifies the request as it was sent, so a request id
	// reused for a different request is refused instead of silently replayed.
	Fingerprint [32]byte
}
