package store

import (
	"context"
	"slices"
	"time"

	"github.com/consentd/consentd/consent"
	"github.com/consentd/consentd/internal/chain"
)

// Every store keeps each event as a chain entry (package chain): the link
// of the partition's previous event, the tombstones of what an erasure
// removed, then the event's encoding without its token (the store's key or
// prefix holds the sequence number). The partition's head link is kept next
// to its sequence counter, written in the same atomic step.

// decodeStoredEvent decodes a history entry's event.
func decodeStoredEvent(entry []byte) (consent.Event, error) {
	e, err := chain.Decode(entry)
	if err != nil {
		return consent.Event{}, errCorrupt
	}
	return DecodeEvent(e.Event)
}

// appendTombstones appends to tombs the tombstone of the entry stored as
// event seq of partition p for contact, and those it carries itself: an
// erasure that removes an earlier erasure keeps its marker's accounts.
// A corrupt entry still gets one, sealed over what is there: erasure is
// the person's right and must not fail, and the tampering stays evident
// (its tombstone does not follow the event before it).
func appendTombstones(tombs []chain.Tombstone, ch *chain.Sealer, p uint32, seq uint64, contact consent.Key, entry []byte) []chain.Tombstone {
	e, err := chain.Decode(entry)
	if err == nil {
		tombs = append(tombs, e.Tombstones...)
	}
	return append(tombs, chain.Tombstone{Seq: seq, Prev: e.Prev, Link: ch.Seal(p, seq, contact, entry)})
}

// finish completes a partition's report from its walk.
func finish(ctx context.Context, rep *consent.PartitionHistory, w *chain.Walk) error {
	rep.Events, rep.Erased = w.Events()
	if _, err := w.Check(ctx, rep.HeadSeq, rep.HeadLink); err != nil {
		return err
	}
	rep.BreakCount = w.Breaks()
	for _, b := range w.Listed() {
		rep.Breaks = append(rep.Breaks, consent.HistoryBreak{Seq: b.Seq, Problem: b.Reason})
	}
	return nil
}

// storedEvent is one history entry as a store read it.
type storedEvent struct {
	seq   uint64
	entry []byte
}

// checkContact adds a contact's history (in sequence order) to w, and
// checks that folding it gives the stored record: a record edited to say
// something its history does not is tampering too, and the one Check would
// act on. rec is nil when the contact has history but no record. Events
// after headSeq were written after the walk began: they are left out, and
// so is the record they changed. When the record or the history could not
// be read in full (readable false: the break is already noted), what there
// is of the history is walked but not compared with the record.
func checkContact(w *chain.Walk, headSeq uint64, key consent.Key, rec *consent.Record, events []storedEvent, readable bool) {
	var (
		folded consent.Record
		last   uint64
		ok     = true
	)
	for _, se := range events {
		if se.seq > headSeq {
			return
		}
		e, added := w.Add(se.seq, key, se.entry)
		if !added {
			ok = false
			continue
		}
		ev, err := DecodeEvent(e.Event)
		if err != nil {
			w.Problem(se.seq, "event is corrupt")
			ok = false
			continue
		}
		if last == 0 && ev.Kind == consent.EventErase && rec != nil && rec.ErasedAt.After(ev.Proof.CapturedAt) {
			// An erasure removed an earlier erasure dated later than
			// itself (applied first, captured later): the record keeps the
			// later date, which the history no longer shows. Take it from
			// the record; a later erasure date only ever refuses more.
			folded.ErasedAt = rec.ErasedAt
		}
		if folded, err = applyEvent(folded, key, ev); err != nil {
			w.Problem(se.seq, "the rules refuse this event after the ones before it")
			ok = false
		}
		last = se.seq
	}
	switch {
	case !ok, !readable:
	case rec == nil && len(events) > 0:
		w.Problem(last, "a contact has history but no record")
	case rec == nil:
	case rec.Token.Seq > headSeq:
	case len(events) == 0:
		w.Problem(rec.Token.Seq, "a contact's record has no history")
	case rec.Token.Seq != last || !sameRecord(rec, &folded):
		w.Problem(rec.Token.Seq, "a contact's record does not match its history")
	}
}

// sameRecord compares two records' contents (not their tokens).
func sameRecord(a, b *consent.Record) bool {
	if !a.ErasedAt.Equal(b.ErasedAt) || !a.WithdrawnAllAt.Equal(b.WithdrawnAllAt) || len(a.Purposes) != len(b.Purposes) ||
		!slices.Equal(a.Links, b.Links) || a.MovedTo != b.MovedTo {
		return false
	}
	for name, pa := range a.Purposes {
		pb, ok := b.Purposes[name]
		if !ok || !pa.WithdrawnAt.Equal(pb.WithdrawnAt) || (pa.Grant == nil) != (pb.Grant == nil) {
			return false
		}
		if pa.Grant != nil && !sameProof(pa.Grant, pb.Grant) {
			return false
		}
	}
	return true
}

func sameProof(a, b *consent.Proof) bool {
	times := func(p *consent.Proof) [3]time.Time { return [3]time.Time{p.CapturedAt, p.ExpiresAt, p.RecordedAt} }
	ta, tb := times(a), times(b)
	for i := range ta {
		if !ta[i].Equal(tb[i]) {
			return false
		}
	}
	x, y := *a, *b
	x.CapturedAt, x.ExpiresAt, x.RecordedAt = time.Time{}, time.Time{}, time.Time{}
	y.CapturedAt, y.ExpiresAt, y.RecordedAt = time.Time{}, time.Time{}, time.Time{}
	return x == y
}
