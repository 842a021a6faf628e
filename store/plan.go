package store

import (
	"errors"

	"github.com/consentd/consentd/consent"
	"github.com/consentd/consentd/internal/chain"
)

// Both stores apply a batch of writes to a partition the same way: read
// what the writes depend on, fold each event into its contact's record with
// consent.Apply and chain it after the partition's newest event, all in
// memory (planBatch), then store the outcome in one atomic step of their
// own (a bbolt transaction, a Redis script).

// planReader reads what planning a partition's writes needs, as stored
// before the batch.
type planReader interface {
	// record returns the contact's record and its sequence number (0: none).
	record(key consent.Key) (consent.Record, uint64, error)
	// replay returns the first outcome of a write whose request id was seen
	// before with its contact (found false: not seen): its token, or the
	// error of a request id reused for a different request.
	replay(w *consent.Write) (tok consent.ConsistencyToken, found bool, err error)
	// claim returns the request a caller's request id is bound to
	// (consent.Write.Claim; found false: none yet).
	claim(name [32]byte) (request [32]byte, found bool, err error)
	// history returns the contact's stored events, oldest first (erasures
	// tombstone them).
	history(key consent.Key) ([]storedEvent, error)
}

// batchPlan is a partition's share of a batch, planned.
type batchPlan struct {
	head     uint64     // the partition's sequence before the batch
	link     chain.Link // the partition's head link after the batch
	contacts []*planned
	byKey    map[consent.Key]int
	ops      []op // the new events, in sequence order from head+1
	requests []request
	// claims are the request ids first seen in their callers' spaces, to
	// bind to their requests (the embedded store; Redis bound them before
	// planning).
	claims []claim
	// The outcome of each write planned, and whether it is a new event (a
	// replay is not).
	toks    []consent.ConsistencyToken
	errs    []error
	applied []bool
}

// planned is one contact of a batch.
type planned struct {
	key     consent.Key
	readSeq uint64 // its record's sequence when read (0: none)
	rec     consent.Record
	changed bool
	// pending are the contact's entries as they stand after the ops
	// planned so far: what an erasure tombstones.
	pending []storedEvent
	read    bool // pending holds the stored history
}

type op struct {
	contact int
	entry   []byte
	erase   bool
}

// request is a request id to remember (tok of its first write), or, for a
// replay, to refresh.
type request struct {
	contact int
	id      string
	fp      [32]byte
	tok     consent.ConsistencyToken
	replay  bool
}

// claim binds a caller's request id (name) to a request.
type claim struct{ name, request [32]byte }

// errReused is a request id already bound to another request.
func errReused() error {
	return consent.Invalid("request_id", "was already used for a different request")
}

// applyEvent folds e, written for the contact key, into r: consent.Apply,
// and the rule only a store can check, which knows the contact's key: a
// link, unlink or rectification names another identifier, and no other
// event names one. Planning and verification both fold with it, so what
// the store refuses to write does not verify either.
func applyEvent(r consent.Record, key consent.Key, e consent.Event) (consent.Record, error) {
	switch {
	case e.Kind.Relates() && e.Other.Key == key:
		return r, consent.Invalid("other", "must name another identifier than the contact itself")
	case e.Kind.Valid() && !e.Kind.Relates() && e.Other != (consent.Link{}):
		return r, consent.Invalid("other", "is only for link, unlink and rectification events")
	}
	return consent.Apply(r, e)
}

// planBatch plans writes ws (all of partition p) after the partition's
// newest event head, whose link is link. A write the rules refuse, or whose
// request id was used for another request, gets its error and changes
// nothing; err is for failures to read.
func planBatch(ch *chain.Key, p uint32, head uint64, link chain.Link, ws []consent.Write, r planReader) (*batchPlan, error) {
	sealer := ch.Sealer()
	pl := &batchPlan{head: head, link: link, byKey: map[consent.Key]int{},
		toks: make([]consent.ConsistencyToken, len(ws)), errs: make([]error, len(ws)), applied: make([]bool, len(ws))}
	// Request ids first seen in this batch, by claim: a repeat is a
	// replay of it.
	type first struct {
		j       int
		request [32]byte
	}
	seen := map[[32]byte]first{}
	for j := range ws {
		w := &ws[j]
		c, ok := pl.byKey[w.Key]
		if !ok {
			rec, readSeq, err := r.record(w.Key)
			if err != nil {
				return nil, err
			}
			c = len(pl.contacts)
			pl.byKey[w.Key] = c
			pl.contacts = append(pl.contacts, &planned{key: w.Key, readSeq: readSeq, rec: rec})
		}
		pc := pl.contacts[c]
		var unbound *claim // w's request id, to bind if w is applied
		if id := w.RequestName(); id != "" {
			name, req := w.Claim()
			if f, ok := seen[name]; ok {
				if f.request != req {
					pl.errs[j] = errReused()
				} else {
					pl.toks[j], pl.errs[j] = pl.toks[f.j], pl.errs[f.j]
				}
				continue
			}
			// One id space per caller: an id bound to another request
			// (another contact, kind or content) is refused, whatever the
			// contact. It is bound when its write is applied (or replayed);
			// a write the rules refuse leaves its id free, as the contact's
			// request ids always have.
			bound, claimed, cerr := r.claim(name)
			switch {
			case cerr != nil:
				return nil, cerr
			case claimed && bound != req:
				pl.errs[j] = errReused()
				continue // and the id is not this write's to repeat
			case !claimed:
				unbound = &claim{name, req}
			}
			seen[name] = first{j, req}
			// A replay answers with the first outcome, even where the
			// rules would now refuse the write. A request id is only ever
			// stored with a change to its contact's record: a contact
			// without one (most of a bulk load) has none to look up.
			var (
				tok   consent.ConsistencyToken
				found bool
				err   error
			)
			if pc.readSeq != 0 {
				tok, found, err = r.replay(w)
			}
			if found {
				pl.toks[j], pl.errs[j] = tok, err
				if err == nil && unbound != nil {
					pl.claims = append(pl.claims, *unbound)
				}
				if err == nil {
					pl.requests = append(pl.requests, request{contact: c, id: id, fp: w.Fingerprint, tok: tok, replay: true})
				}
				continue
			}
			if err != nil {
				return nil, err
			}
		}
		next, err := applyEvent(pc.rec, w.Key, w.Event)
		if errors.Is(err, consent.ErrInvalid) || errors.Is(err, consent.ErrSuppressed) {
			pl.errs[j] = err
			continue
		}
		if err != nil {
			return nil, err
		}
		seq := pl.head + uint64(len(pl.ops)) + 1
		next.Token = consent.ConsistencyToken{Partition: p, Seq: seq}
		pc.rec, pc.changed = next, true
		ev := w.Event
		ev.Token = consent.ConsistencyToken{}
		var tombs []chain.Tombstone
		erase := ev.Kind == consent.EventErase
		if erase {
			if !pc.read {
				stored, err := r.history(w.Key)
				if err != nil {
					return nil, err
				}
				pc.pending = append(stored, pc.pending...)
				pc.read = true
			}
			for _, se := range pc.pending {
				tombs = appendTombstones(tombs, sealer, p, se.seq, w.Key, se.entry)
			}
			pc.pending = pc.pending[:0]
		}
		entry := chain.Encode(nil, pl.link, tombs, EncodeEvent(nil, &ev))
		pl.link = sealer.Seal(p, seq, w.Key, entry)
		pc.pending = append(pc.pending, storedEvent{seq: seq, entry: entry})
		pl.ops = append(pl.ops, op{contact: c, entry: entry, erase: erase})
		pl.toks[j], pl.applied[j] = next.Token, true
		if id := w.RequestName(); id != "" {
			pl.requests = append(pl.requests, request{contact: c, id: id, fp: w.Fingerprint, tok: next.Token})
			if unbound != nil {
				pl.claims = append(pl.claims, *unbound)
			}
		}
	}
	return pl, nil
}
