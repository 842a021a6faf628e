package consent

import (
	"bytes"
	"fmt"
	"slices"
	"time"
)

// Record is everything known about one contact, folded from its events. A
// record handed out by a store or cache is shared: never modify it; Apply
// returns a new one.
type Record struct {
	// Token is the version of the last event applied.
	Token ConsistencyToken
	// ErasedAt is set when the contact was erased: the record is then only a
	// suppression marker, until a fresh first-party grant.
	ErasedAt time.Time
	// WithdrawnAllAt is the latest withdrawal of every purpose, including
	// purposes granted later with an older capture date.
	WithdrawnAllAt time.Time
	Purposes       map[string]PurposeRecord
	// Links are the other identifiers of the same person, sorted by key;
	// at most MaxLinks. An erasure drops them.
	Links []Link
	// MovedTo is the identifier this one was rectified to (one of Links;
	// zero if it was not moved): a withdrawal written here after the move
	// is written there too, so it follows the person to the address they
	// now use. An erasure, and an unlink of that link, clear it.
	MovedTo Key
}

// PurposeRecord is the state of one purpose.
type PurposeRecord struct {
	Grant       *Proof    // the latest-dated grant, nil if none
	WithdrawnAt time.Time // the latest-dated withdrawal of this purpose
}

// Apply folds e into r and returns the new record; r is not modified. Events
// are ordered by the time the person acted (a grant's EffectiveAt, an
// erasure's or withdrawal's CapturedAt), not by arrival: a later-dated event
// wins and a withdrawal beats a grant with the same time.
// It refuses, with ErrSuppressed, a grant that would re-import an erased
// contact: one not known to be first-party (Proof.FromThirdParty), or one
// captured before the erasure.
func Apply(r Record, e Event) (Record, error) {
	switch e.Kind {
	case EventGrant:
		if !r.ErasedAt.IsZero() {
			if e.Proof.FromThirdParty() {
				return r, fmt.Errorf("%w: it was erased, and a third-party grant may not re-import it", ErrSuppressed)
			}
			if !e.Proof.EffectiveAt().After(r.ErasedAt) {
				return r, fmt.Errorf("%w: it was erased after this consent was captured", ErrSuppressed)
			}
		}
		out := r.clone()
		proof := e.Proof
		for _, name := range e.Purposes {
			pr := out.Purposes[name]
			if pr.Grant == nil || !proof.EffectiveAt().Before(pr.Grant.EffectiveAt()) {
				pr.Grant = &proof
			}
			out.Purposes[name] = pr
		}
		return out, nil
	case EventWithdraw:
		out := r.clone()
		at := e.Proof.CapturedAt
		if len(e.Purposes) == 0 {
			out.WithdrawnAllAt = later(out.WithdrawnAllAt, at)
			return out, nil
		}
		for _, name := range e.Purposes {
			pr := out.Purposes[name]
			pr.WithdrawnAt = later(pr.WithdrawnAt, at)
			out.Purposes[name] = pr
		}
		return out, nil
	case EventErase:
		return Record{Token: r.Token, ErasedAt: later(r.ErasedAt, e.Proof.CapturedAt)}, nil
	case EventLink, EventRectifyFrom:
		return r.link(e.Other)
	case EventRectifyTo:
		out, err := r.link(e.Other)
		if err != nil {
			return r, err
		}
		// From when it was recorded, if that is later than the date the
		// request gives: a rectification dated before a grant of the old
		// identifier must still leave it blocked.
		out.WithdrawnAllAt = later(out.WithdrawnAllAt, later(e.Proof.CapturedAt, e.Proof.RecordedAt))
		out.MovedTo = e.Other.Key
		return out, nil
	case EventUnlink:
		out := r.clone()
		out.Links = nil
		if e.Other.Key == (Key{}) || e.Other.Key == r.MovedTo {
			out.MovedTo = Key{}
		}
		if e.Other.Key == (Key{}) {
			return out, nil
		}
		for _, l := range r.Links {
			if l.Key != e.Other.Key {
				out.Links = append(out.Links, l)
			}
		}
		return out, nil
	}
	return r, Invalid("kind", "unknown event kind %d", e.Kind)
}

// link returns r linked to other, which must be a valid kind and not r's
// own key (the caller knows r's key; the store checks that).
func (r Record) link(other Link) (Record, error) {
	if other.Key == (Key{}) || !other.Kind.Valid() {
		return r, Invalid("other", "must name an identifier")
	}
	i, found := slices.BinarySearchFunc(r.Links, other.Key, func(l Link, k Key) int { return bytes.Compare(l.Key[:], k[:]) })
	out := r.clone()
	if found {
		return out, nil
	}
	if len(r.Links) >= MaxLinks {
		return r, Invalid("other", "an identifier may be linked to at most %d others", MaxLinks)
	}
	out.Links = slices.Insert(slices.Clone(r.Links), i, other)
	return out, nil
}

// Linked reports whether k is one of r's links.
func (r *Record) Linked(k Key) bool {
	_, found := slices.BinarySearchFunc(r.Links, k, func(l Link, k Key) int { return bytes.Compare(l.Key[:], k[:]) })
	return found
}

func (r Record) clone() Record {
	out := r
	out.Purposes = make(map[string]PurposeRecord, len(r.Purposes)+1)
	for k, v := range r.Purposes {
		out.Purposes[k] = v
	}
	return out
}

// Withdrawn returns the latest withdrawal that applies to purpose.
func (r *Record) Withdrawn(purpose string) time.Time {
	return later(r.Purposes[purpose].WithdrawnAt, r.WithdrawnAllAt)
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
