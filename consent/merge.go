package consent

import (
	"slices"
	"time"
)

// Merge is what it takes to fold the records of several spellings of one
// identifier into the record of its canonical spelling, for a migration
// that re-keys a store (consentctl migrate).
type Merge struct {
	// Events are to be applied, in order, to the canonical spelling's
	// record.
	Events []Event
	// Lost are the yeses that did not survive: each lost to a withdrawal
	// or an erasure under one of the spellings, and the person must be
	// asked again.
	Lost []LostGrant
}

// LostGrant is one yes a merge could not keep.
type LostGrant struct {
	Spelling int // index into the records given to MergeSpellings
	Purpose  string
	Grant    Proof
}

// MergeSpellings returns the events that make spellings[0], the canonical
// spelling's record, hold the most restrictive latest state of every
// spelling: a person who said no (or was erased) under one spelling must
// not be mailed on a yes given under another, whatever its date. So:
//
//   - if any spelling was erased, the canonical one is erased at at: an
//     erasure leaves nothing to merge, and every yes of every spelling is
//     lost;
//   - else every withdrawal of the other spellings is copied with its own
//     time (a withdrawal only ever restricts, and one of every purpose
//     still outranks grants dated before it that arrive later); for each
//     purpose whose latest state is withdrawn under some spelling and
//     granted under another, a withdrawal is recorded at at, after every
//     such yes, and those yeses are lost; the other spellings' yeses of
//     every other purpose are copied with their proof.
//
// A spelling's latest state for a purpose is granted when its grant counts
// from after its last withdrawal of the purpose (or of every purpose), as
// Decide sees it; withdrawn when it has such a withdrawal; else none.
// proof is the proof of the events recorded at at (who ran the migration);
// its CapturedAt and RecordedAt are set to at.
func MergeSpellings(spellings []Record, at time.Time, proof Proof) Merge {
	proof.CapturedAt, proof.RecordedAt = at, at
	var m Merge
	grants := func(purposeLost func(string) bool) {
		for s, r := range spellings {
			for _, p := range sortedPurposes(r) {
				if g := r.Purposes[p].Grant; g != nil && granted(&r, p) && purposeLost(p) {
					m.Lost = append(m.Lost, LostGrant{Spelling: s, Purpose: p, Grant: *g})
				}
			}
		}
	}
	for _, r := range spellings {
		if !r.ErasedAt.IsZero() {
			m.Events = []Event{{Kind: EventErase, Proof: proof}}
			grants(func(string) bool { return true })
			return m
		}
	}
	// Every purpose any spelling names: a withdrawal of every purpose under
	// one spelling is a no for a purpose only another names.
	union := map[string]bool{}
	for _, r := range spellings {
		for p := range r.Purposes {
			union[p] = true
		}
	}
	purposes := sortedKeys(union)
	withdrawn := map[string]bool{} // a purpose's latest state is withdrawn under some spelling
	mixed := map[string]bool{}     // and granted under another
	for _, p := range purposes {
		yes := false
		for _, r := range spellings {
			if granted(&r, p) {
				yes = true
			} else if !r.Withdrawn(p).IsZero() {
				withdrawn[p] = true
			}
		}
		mixed[p] = yes && withdrawn[p]
	}
	// A withdrawal of every purpose is copied as one too: it also stands
	// against grants of purposes no spelling names yet, dated before it.
	for _, r := range spellings[1:] {
		if !r.WithdrawnAllAt.IsZero() {
			m.Events = append(m.Events, Event{Kind: EventWithdraw, Proof: withdrawalProof(proof, r.WithdrawnAllAt)})
		}
		for _, p := range sortedPurposes(r) {
			if at := r.Purposes[p].WithdrawnAt; !at.IsZero() {
				m.Events = append(m.Events, Event{Kind: EventWithdraw, Purposes: []string{p}, Proof: withdrawalProof(proof, at)})
			}
		}
	}
	for _, r := range spellings[1:] {
		for _, p := range sortedPurposes(r) {
			if g := r.Purposes[p].Grant; g != nil && !withdrawn[p] {
				m.Events = append(m.Events, Event{Kind: EventGrant, Purposes: []string{p}, Proof: *g})
			}
		}
	}
	for _, p := range purposes {
		if !mixed[p] {
			continue
		}
		m.Events = append(m.Events, Event{Kind: EventWithdraw, Purposes: []string{p}, Proof: proof})
	}
	grants(func(p string) bool { return mixed[p] })
	return m
}

// granted reports whether r's latest state for purpose is a yes.
func granted(r *Record, purpose string) bool {
	g := r.Purposes[purpose].Grant
	return g != nil && g.EffectiveAt().After(r.Withdrawn(purpose))
}

func withdrawalProof(proof Proof, at time.Time) Proof {
	proof.CapturedAt = at
	return proof
}

func sortedPurposes(r Record) []string { return sortedKeys(r.Purposes) }

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
