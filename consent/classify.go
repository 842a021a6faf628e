package consent

import "time"

// ClaimStatus is what another system's record says about one (contact,
// purpose): the starting point of a migration into consentd.
type ClaimStatus uint8

// The claim statuses.
const (
	// ClaimNone: the record says nothing about the purpose.
	ClaimNone ClaimStatus = iota
	ClaimGranted
	ClaimWithdrawn
)

// Claim is another system's word about one (contact, purpose), as an import
// reads it: its status, the proof it kept of the yes, and when the person
// last engaged.
type Claim struct {
	Status        ClaimStatus
	Proof         Proof
	LastEngagedAt time.Time // zero: not known
}

// Class is what a claim comes to under consentd's rules: imported (valid,
// withdrawn) or, for a yes that would not hold, why the person must be
// asked again.
type Class uint8

// The classes, the re-permission ones in the order Classify tries them.
const (
	ClassValid Class = iota
	ClassWithdrawn
	ClassNoRecord
	ClassMethodUnrecorded
	ClassThirdPartyUnconfirmed
	ClassNotSpecific
	ClassStale
	classEnd
)

var classNames = [...]string{
	ClassValid:                 "valid",
	ClassWithdrawn:             "withdrawn",
	ClassNoRecord:              "no_record",
	ClassMethodUnrecorded:      "method_unrecorded",
	ClassThirdPartyUnconfirmed: "third_party",
	ClassNotSpecific:           "not_specific",
	ClassStale:                 "stale",
}

// String is the class's name in an import's report and segment files.
func (c Class) String() string {
	if c < classEnd {
		return classNames[c]
	}
	return "unknown"
}

// Classify decides what a claim about purpose p comes to at time now, by the
// claim alone: the first of these that applies. A withdrawal is imported
// whatever else it says. A yes is imported only if Check would answer ALLOW
// for the record it makes; otherwise the person is asked again, for the
// first reason that holds: no record, no affirmative method, a source that
// is not first-party where p wants one, several purposes bundled into one
// yes, or no date, or a date (or a last engagement) outside p's window.
// Whether the contact was erased before is the store's to say, not the
// claim's.
func Classify(c *Claim, p *Purpose, now time.Time) Class {
	g := &c.Proof
	switch {
	case c.Status == ClaimWithdrawn:
		return ClassWithdrawn
	case c.Status != ClaimGranted:
		return ClassNoRecord
	case g.Method == MethodUnspecified:
		return ClassMethodUnrecorded
	case g.FromThirdParty() && !p.ThirdPartyAllowed:
		return ClassThirdPartyUnconfirmed
	case g.Bundled:
		return ClassNotSpecific
	case g.CapturedAt.IsZero():
		return ClassStale
	case p.ReconfirmMonths > 0 && !c.LastEngagedAt.IsZero() && !now.Before(c.LastEngagedAt.AddDate(0, p.ReconfirmMonths, 0)):
		return ClassStale
	}
	// The rest is Check's own rule, applied to the record this yes would
	// make on its own.
	rec, err := Apply(Record{}, Event{Kind: EventGrant, Purposes: []string{p.Name}, Proof: *g})
	if err != nil {
		return ClassStale // unreachable: an empty record takes any grant
	}
	switch Decide(&rec, p, now).Reason {
	case ReasonGranted:
		return ClassValid
	case ReasonThirdPartyUnconfirmed:
		return ClassThirdPartyUnconfirmed
	case ReasonNotSpecific:
		return ClassNotSpecific
	case ReasonNoConsent:
		return ClassMethodUnrecorded
	}
	return ClassStale
}
