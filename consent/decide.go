package consent

import "time"

// Reason says why a decision was made. Values match consent.v1.Reason.
type Reason uint8

// The reasons. Only ReasonGranted comes with an ALLOW.
const (
	ReasonUnspecified Reason = iota
	ReasonGranted
	ReasonNoConsent
	ReasonWithdrawn
	ReasonExpired
	ReasonStale
	ReasonThirdPartyUnconfirmed
	ReasonNotSpecific
	ReasonErased
	reasonEnd
)

// NumReasons is the number of Reason values, unspecified included: the
// length of an array indexed by Reason.
const NumReasons = int(reasonEnd)

var reasonNames = [...]string{
	ReasonUnspecified:           "unspecified",
	ReasonGranted:               "granted",
	ReasonNoConsent:             "no_consent",
	ReasonWithdrawn:             "withdrawn",
	ReasonExpired:               "expired",
	ReasonStale:                 "stale",
	ReasonThirdPartyUnconfirmed: "third_party_unconfirmed",
	ReasonNotSpecific:           "not_specific",
	ReasonErased:                "erased",
}

func (r Reason) String() string {
	if r < reasonEnd {
		return reasonNames[r]
	}
	return "unknown"
}

// Reasons lists every reason, for counting and reporting.
func Reasons() []Reason {
	out := make([]Reason, 0, reasonEnd-1)
	for r := ReasonGranted; r < reasonEnd; r++ {
		out = append(out, r)
	}
	return out
}

// Decision is the answer to "may I use this contact for this purpose now?".
// The zero Decision is a deny: only Decide can produce an allow.
type Decision struct {
	Allowed bool
	Reason  Reason
}

func deny(r Reason) Decision { return Decision{Reason: r} }

// Decide answers for one purpose from a contact's record at time now. It is
// pure and allocates nothing. A nil record is an unknown contact, which looks
// exactly like a contact without consent.
func Decide(r *Record, p *Purpose, now time.Time) Decision {
	if r == nil {
		return deny(ReasonNoConsent)
	}
	g := r.Purposes[p.Name].Grant
	if g != nil && !r.ErasedAt.IsZero() && !g.EffectiveAt().After(r.ErasedAt) {
		g = nil // Apply never stores this; a record from elsewhere might.
	}
	withdrawn := r.Withdrawn(p.Name)
	if g == nil {
		// Erased, with no fresh grant since: erased, whatever withdrawal
		// came after (an old unsubscribe link clicked). Apply keeps that
		// withdrawal's date, so it still beats a grant dated before it.
		switch {
		case !r.ErasedAt.IsZero():
			return deny(ReasonErased)
		case !withdrawn.IsZero():
			return deny(ReasonWithdrawn)
		}
		return deny(ReasonNoConsent)
	}
	switch {
	case !withdrawn.IsZero() && !g.EffectiveAt().After(withdrawn):
		return deny(ReasonWithdrawn)
	case !g.Method.Affirmative():
		return deny(ReasonNoConsent) // a yes without a recorded affirmative method is not consent
	case !g.ExpiresAt.IsZero() && !now.Before(g.ExpiresAt):
		return deny(ReasonExpired)
	case g.Bundled:
		return deny(ReasonNotSpecific)
	case g.FromThirdParty() && !p.ThirdPartyAllowed:
		return deny(ReasonThirdPartyUnconfirmed)
	case p.ReconfirmMonths > 0 && !now.Before(g.EffectiveAt().AddDate(0, p.ReconfirmMonths, 0)):
		return deny(ReasonStale)
	}
	return Decision{Allowed: true, Reason: ReasonGranted}
}
