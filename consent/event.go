package consent

import (
	"crypto/sha256"
	"encoding/hex"
	"time"
)

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
	// EventLink records that Event.Other is another identifier of the same
	// person. It is written on both identifiers.
	EventLink
	// EventUnlink removes the link to Event.Other (the zero key: every
	// link). It is written on both identifiers.
	EventUnlink
	// EventRectifyFrom is written on the new identifier of a rectification:
	// the consents of Event.Other (the old one) were carried here, by the
	// grants and withdrawals written before it in the same batch.
	EventRectifyFrom
	// EventRectifyTo is written on the old identifier of a rectification:
	// the person's consents moved to Event.Other (the new one), and this
	// identifier is withdrawn from every purpose (from the later of the
	// event's capture and record times), so mail to it stays blocked.
	EventRectifyTo
	eventKindEnd
)

// Valid reports whether k is a known event kind other than unspecified.
func (k EventKind) Valid() bool { return k > EventUnspecified && k < eventKindEnd }

// Relates reports whether events of kind k name another identifier
// (Event.Other): links, unlinks and rectifications.
func (k EventKind) Relates() bool {
	return k == EventLink || k == EventUnlink || k == EventRectifyFrom || k == EventRectifyTo
}

// IDKind is what sort of identifier a key stands for. Values match
// consent.v1.IdentifierKind. The kind is not personal data, so it is kept
// beside the keys of linked identifiers.
type IDKind uint8

// The identifier kinds.
const (
	IDUnknown IDKind = iota
	IDEmail
	IDPhone
	// IDExternal is an opaque id a caller's own system keys people by,
	// written namespace:id (crm:12345).
	IDExternal
	idKindEnd
)

// Valid reports whether k is a known kind other than IDUnknown.
func (k IDKind) Valid() bool { return k > IDUnknown && k < idKindEnd }

// String is the kind as people read it (reports, tables, --json): email,
// phone, external; unknown for IDUnknown and any value not a kind.
func (k IDKind) String() string {
	switch k {
	case IDEmail:
		return "email"
	case IDPhone:
		return "phone"
	case IDExternal:
		return "external"
	}
	return "unknown"
}

// MaxLinks bounds the identifiers linked to one identifier, so that a
// person's closure, read on every person-wide request, stays small.
const MaxLinks = 32

// Link is one identifier linked to a record's: its key and kind, never the
// identifier itself.
type Link struct {
	Key  Key
	Kind IDKind
}

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

// FromThirdParty reports whether the yes is not known to be the person's own,
// given to the sender: a third-party source, and a source never recorded,
// which cannot be shown to be first-party. Decide, Apply and Classify ask
// it, so a proof is third-party to all of them or to none.
func (p *Proof) FromThirdParty() bool { return p.Source != SourceFirstParty }

// Event is one entry of a contact's history.
type Event struct {
	Kind      EventKind
	Purposes  []string // empty on a withdrawal of every purpose and on erasure
	Proof     Proof
	RequestID string
	Token     ConsistencyToken // set by the store when the event is applied
	// Other is the identifier a link, unlink or rectification names (see
	// EventKind.Relates); zero for every other kind, and for an unlink of
	// every link.
	Other Link
}

// Write is one event for one contact, as handed to a store.
type Write struct {
	Key   Key
	Event Event
	// Fingerprint identifies the request as it was sent (without its
	// contact), so a request id reused for a different request is refused
	// instead of silently replayed.
	Fingerprint [32]byte
	// Caller is the authenticated caller's name, "" without authentication.
	// Request ids are one space per caller: the same id from another caller
	// is another request.
	Caller string
}

// RequestName is the name under which a store keeps w's request id with
// its contact: the id itself for the unauthenticated caller (as before ids
// had callers), else the id and a hash of the caller, joined by a byte no
// request id may hold (labels have no control characters), so no two
// callers' names meet. "" without a request id.
func (w *Write) RequestName() string {
	id := w.Event.RequestID
	if id == "" || w.Caller == "" {
		return id
	}
	h := sha256.Sum256([]byte(w.Caller))
	return id + "\x00" + hex.EncodeToString(h[:8])
}

// Claim is how a store binds a request id to one request across all of a
// caller's writes, whatever their contacts: name identifies the (caller,
// id) pair, request the request (its contact, kind and content). The same
// name with another request is a request id reused. Both are hashes, so
// neither a caller's name nor a contact is kept where they are stored.
func (w *Write) Claim() (name, request [32]byte) {
	h := sha256.New()
	h.Write([]byte("consentd request id\x00"))
	h.Write([]byte(w.Caller))
	h.Write([]byte{0})
	h.Write([]byte(w.Event.RequestID))
	h.Sum(name[:0])
	h.Reset()
	h.Write([]byte{byte(w.Event.Kind)})
	h.Write(w.Key[:])
	h.Write(w.Fingerprint[:])
	h.Sum(request[:0])
	return name, request
}
