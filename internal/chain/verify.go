package chain

import (
	"context"
	"fmt"
)

// Break is a place where a partition's chain does not hold.
type Break struct {
	Partition uint32
	Seq       uint64
	Reason    string
}

func (b *Break) Error() string {
	return fmt.Sprintf("partition %d, event %d: %s", b.Partition, b.Seq, b.Reason)
}

// Walk checks one partition: Add every stored entry, in any order, then
// Check against the partition's head.
type Walk struct {
	key       *Sealer
	partition uint32
	live      map[uint64]node
	erased    map[uint64]node
	// kept are the earliest MaxListed breaks found so far, in order; the
	// rest are only counted, so a badly damaged store costs no more memory
	// to check than an intact one.
	kept   []found
	breaks int
}

// MaxListed is how many breaks a Walk keeps in detail: the earliest, by
// event. Every break is counted (Breaks).
const MaxListed = 10

// found is a break and whether it was found outside the chain (Problem):
// at the same event, the chain's own finding is the one reported.
type found struct {
	Break
	outside bool
}

type node struct{ link, prev Link }

// Walk starts checking partition.
func (k *Key) Walk(partition uint32) *Walk {
	return &Walk{key: k.Sealer(), partition: partition, live: map[uint64]node{}, erased: map[uint64]node{}}
}

func (w *Walk) broken(seq uint64, format string, args ...any) {
	w.note(found{Break: Break{Partition: w.partition, Seq: seq}}, format, args...)
}

// note keeps b if it is among the MaxListed earliest breaks so far: by
// event, and at the same event the chain's own finding before one from
// outside, then the one found first. The reason is only formatted when kept.
func (w *Walk) note(b found, format string, args ...any) {
	w.breaks++
	after := func(f found) bool { return f.Seq > b.Seq || (f.Seq == b.Seq && f.outside && !b.outside) }
	i := len(w.kept)
	for i > 0 && after(w.kept[i-1]) {
		i--
	}
	if i == MaxListed {
		return
	}
	b.Reason = fmt.Sprintf(format, args...)
	if len(w.kept) == MaxListed {
		w.kept = w.kept[:MaxListed-1]
	}
	w.kept = append(w.kept, found{})
	copy(w.kept[i+1:], w.kept[i:])
	w.kept[i] = b
}

// Add takes the entry stored as event seq of the contact and returns it
// decoded; ok is false when it cannot be decoded (which is a break).
func (w *Walk) Add(seq uint64, contact [32]byte, entry []byte) (e Entry, ok bool) {
	e, err := Decode(entry)
	if err != nil {
		w.broken(seq, "entry is corrupt")
		return e, false
	}
	if _, dup := w.live[seq]; dup {
		w.broken(seq, "two entries have this sequence number (one was copied)")
		return e, false
	}
	w.live[seq] = node{link: w.key.Seal(w.partition, seq, contact, entry), prev: e.Prev}
	for _, t := range e.Tombstones {
		nd := node{link: t.Link, prev: t.Prev}
		if old, dup := w.erased[t.Seq]; dup && old != nd {
			w.broken(t.Seq, "two erasure markers disagree about this event")
		}
		w.erased[t.Seq] = nd
	}
	return e, true
}

// Has reports whether event seq is accounted for: present, or removed by
// an erasure.
func (w *Walk) Has(seq uint64) bool {
	_, live := w.live[seq]
	_, erased := w.erased[seq]
	return live || erased
}

// Events returns how many entries were added and how many events the
// erasure markers account for.
func (w *Walk) Events() (live, erased int) { return len(w.live), len(w.erased) }

// Problem records a break found outside the chain (a record that does not
// match its history, a change stream that names a missing event, a key that
// cannot be read as what its name says), so Check reports the first of all
// of them. seq is 0 when the problem belongs to no event.
func (w *Walk) Problem(seq uint64, reason string) {
	w.note(found{Break: Break{Partition: w.partition, Seq: seq}, outside: true}, "%s", reason)
}

// Breaks is how many breaks were found, the listed ones included.
func (w *Walk) Breaks() int { return w.breaks }

// Listed returns the earliest breaks found, at most MaxListed, in order:
// after Check, the first is the one Check returned.
func (w *Walk) Listed() []Break {
	out := make([]Break, len(w.kept))
	for i, f := range w.kept {
		out[i] = f.Break
	}
	return out
}

// Check returns the first break of the partition whose newest event is
// headSeq with link head, or nil when the chain holds; err is ctx's, when
// it ends first.
func (w *Walk) Check(ctx context.Context, headSeq uint64, head Link) (*Break, error) {
	var prev Link // the link of event n-1; zero before the first
	for n := uint64(1); n <= headSeq; n++ {
		if n%(1<<16) == 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		nd, live := w.live[n]
		tomb, erased := w.erased[n]
		if live && erased {
			w.broken(n, "an erasure removed this event, but it is present again")
		}
		if !live {
			// An erased event is checked through its tombstone: the link
			// it followed and its own, signed by the erasure that holds it.
			nd = tomb
		}
		switch _, before := w.erased[n-1]; {
		case !live && !erased:
			w.broken(n, "missing: deleted without an erasure marker")
		case nd.prev == prev:
		case before:
			w.broken(n, "does not follow the erased event before it: this event or an erasure marker was altered")
		default:
			w.broken(n-1, "altered: its hash does not match the one event %d holds", n)
		}
		prev = nd.link
	}
	for seq := range w.live {
		if seq == 0 || seq > headSeq {
			w.broken(seq, "beyond the partition head (%d)", headSeq)
		}
	}
	if prev != head {
		w.broken(headSeq, "does not match the partition head: altered, or the head was")
	}
	if len(w.kept) == 0 {
		return nil, nil
	}
	b := w.kept[0].Break
	return &b, nil
}
