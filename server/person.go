package server

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/consentd/consentd/consent"
	pb "github.com/consentd/consentd/proto/consent/v1"
)

// A person is every identifier reachable from one through links: the
// closure is read breadth first, fully consistent (a person-wide erasure
// must not miss an identifier linked a moment ago), and bounded, so that a
// person-wide request costs a known number of reads and writes.

// maxPerson bounds the identifiers of one person. Links are refused when
// they would make a person larger; a larger person (two links made at
// once) is refused on read with errPersonTooLarge until it is unlinked.
const maxPerson = 64

// errPersonTooLarge: the person reached more than maxPerson identifiers.
var errPersonTooLarge = fmt.Errorf("the person has more than %d identifiers: unlink some (UnlinkIdentifier) before a person-wide request", maxPerson)

// member is one identifier of a person, as person read it.
type member struct {
	link consent.Link
	rec  *consent.Record
	// dist is how many links away from the identifier asked about it is.
	dist int
}

// person returns the identifiers of self's person, self first, then by
// distance (each level read in one GetMany), each level in link order.
func (s *Server) person(ctx context.Context, self consent.Link) ([]member, error) {
	seen := map[consent.Key]bool{self.Key: true}
	level := []consent.Link{self}
	var out []member
	for dist := 0; len(level) > 0; dist++ {
		keys := make([]consent.Key, len(level))
		for i, l := range level {
			keys[i] = l.Key
		}
		recs := make([]*consent.Record, len(keys))
		if err := s.cfg.Records.GetMany(ctx, keys, consent.Consistency{Mode: consent.FullyConsistent}, recs); err != nil {
			return nil, err
		}
		var next []consent.Link
		for i, l := range level {
			rec := recs[i]
			if rec == nil {
				rec = &consent.Record{}
			}
			out = append(out, member{link: l, rec: rec, dist: dist})
			for _, o := range rec.Links {
				if seen[o.Key] {
					continue
				}
				if len(seen) == maxPerson {
					return nil, errPersonTooLarge
				}
				seen[o.Key] = true
				next = append(next, o)
			}
		}
		level = next
	}
	return out, nil
}

// scope parses a request's scope: whether it is person-wide.
func scope(sc pb.Scope) (bool, error) {
	switch sc {
	case pb.Scope_SCOPE_UNSPECIFIED, pb.Scope_SCOPE_IDENTIFIER:
		return false, nil
	case pb.Scope_SCOPE_PERSON:
		return true, nil
	}
	return false, consent.Invalid("scope", "unknown scope %d (want SCOPE_IDENTIFIER or SCOPE_PERSON)", sc)
}

// identify keys contact and tells its kind, refusing a malformed one as
// field.
func (s *Server) identify(field, contact string) (consent.Link, error) {
	k, kind, err := s.cfg.Keys.Identify(contact)
	if err != nil {
		return consent.Link{}, &consent.FieldError{Field: field, Problem: err.Error()}
	}
	return consent.Link{Key: k, Kind: kind}, nil
}

// part derives one write of a request that writes several: its request id
// and fingerprint from the request's, what the write does (role) and the
// identifiers it touches, so that a retry of the request derives the same
// ones (each write applies once) and no two writes of one request share a
// request id (which the store would refuse as reused). A request without a
// request id makes writes without one.
func part(w consent.Write, role string, parts ...[]byte) consent.Write {
	h := sha256.New()
	h.Write([]byte(role))
	for _, p := range parts {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(p)))
		h.Write(n[:])
		h.Write(p)
	}
	d := h.Sum(nil)
	if w.Event.RequestID != "" {
		w.Event.RequestID += "/" + role + "-" + hex.EncodeToString(d[:8])
	}
	w.Fingerprint = sha256.Sum256(append(w.Fingerprint[:], d...))
	return w
}

// spread applies w on every other identifier of w.Key's person, then on
// w.Key itself: the farthest first, so that if it stops half way (erasures
// drop links) a retry with the same request id still reaches every
// identifier not yet written, through the ones nearer. It returns the
// write on w.Key and the others in the order written.
func (s *Server) spread(ctx context.Context, w consent.Write, self consent.Link, role string) (consent.ConsistencyToken, []*pb.IdentifierWrite, error) {
	members, err := s.person(ctx, self)
	if err != nil {
		return consent.ConsistencyToken{}, nil, err
	}
	w.Caller, _ = CallerFrom(ctx)
	var others []*pb.IdentifierWrite
	for i := len(members) - 1; i > 0; i-- {
		m := members[i]
		ow := part(w, role, m.link.Key[:])
		ow.Key = m.link.Key
		tok, err := s.cfg.Store.Apply(ctx, ow)
		if err != nil {
			return consent.ConsistencyToken{}, nil, err
		}
		others = append(others, &pb.IdentifierWrite{Identifier: identifierPB(m.link), ConsistencyToken: s.issue(tok)})
	}
	tok, err := s.cfg.Store.Apply(ctx, w)
	return tok, others, err
}

// follow writes w, a withdrawal just written on w.Key (or not needed
// there), on the identifier w.Key
// was rectified to (Record.MovedTo), and on the one that moved to, and so
// on for at most consent.MaxLinks hops, stopping at one already written
// (a cycle): a person who withdraws on an address they used before, say
// from a link in old mail, withdraws on the address they use now. Each
// write's request id derives from w's (part), so a retry applies it once.
// It returns the writes in order.
//
// It reads each record after the write on it: a rectification whose
// RECTIFY_TO landed before the write is seen here, and one that landed
// after carries the withdrawal itself (Rectify reads the old identifier
// again after RECTIFY_TO). That read is the cost of a withdrawal on an
// identifier that never moved; Check pays nothing.
func (s *Server) follow(ctx context.Context, w consent.Write) ([]*pb.IdentifierWrite, error) {
	w.Caller, _ = CallerFrom(ctx)
	// Fully consistent: the write dropped this sidecar's cached copy, so
	// any read goes to the store.
	c := consent.Consistency{Mode: consent.FullyConsistent}
	seen := map[consent.Key]bool{w.Key: true}
	var out []*pb.IdentifierWrite
	for at := w.Key; len(out) < consent.MaxLinks; {
		rec, err := s.cfg.Records.Get(ctx, at, c)
		if err != nil {
			return out, err
		}
		if rec == nil || rec.MovedTo == (consent.Key{}) || seen[rec.MovedTo] {
			return out, nil
		}
		to := consent.Link{Key: rec.MovedTo}
		for _, l := range rec.Links {
			if l.Key == to.Key {
				to = l
			}
		}
		seen[to.Key] = true
		fw := part(w, "moved", to.Key[:])
		fw.Key = to.Key
		t, err := s.cfg.Store.Apply(ctx, fw)
		if err != nil {
			return out, err
		}
		out = append(out, &pb.IdentifierWrite{Identifier: identifierPB(to), ConsistencyToken: s.issue(t)})
		at = to.Key
	}
	return out, nil
}

// link is a parsed LinkIdentifiers or UnlinkIdentifier request.
type link struct {
	self   consent.Link
	others []consent.Link
	w      consent.Write // the event every write shares, keyed to self
}

func (s *Server) linkRequest(req *pb.LinkIdentifiersRequest) (link, error) {
	now := s.cfg.Now()
	self, err := s.identify("contact", req.GetContact())
	if err != nil {
		return link{}, err
	}
	if len(req.GetOthers()) == 0 {
		return link{}, consent.Invalid("others", "must name at least one identifier to link to contact")
	}
	if len(req.GetOthers()) > consent.MaxLinks {
		return link{}, consent.Invalid("others", "has %d identifiers, at most %d (an identifier's links) are allowed", len(req.GetOthers()), consent.MaxLinks)
	}
	l := link{self: self}
	for i, c := range req.GetOthers() {
		field := fmt.Sprintf("others[%d]", i)
		o, err := s.identify(field, c)
		if err != nil {
			return link{}, err
		}
		if o.Key == self.Key {
			return link{}, consent.Invalid(field, "is contact itself: an identifier is not linked to itself")
		}
		if j := slices.IndexFunc(l.others, func(p consent.Link) bool { return p.Key == o.Key }); j >= 0 {
			return link{}, consent.Invalid(field, "is the same identifier as others[%d]", j)
		}
		l.others = append(l.others, o)
	}
	if err := labels("actor", req.GetActor(), "request_id", req.GetRequestId()); err != nil {
		return link{}, err
	}
	captured, err := s.capturedAt("captured_at", req.GetCapturedAt(), now)
	if err != nil {
		return link{}, err
	}
	l.w = relating(self.Key, consent.EventLink, req.GetActor(), req.GetRequestId(), captured, now,
		fingerprint(req, func(m proto.Message) {
			m.(*pb.LinkIdentifiersRequest).Contact, m.(*pb.LinkIdentifiersRequest).Others = "", nil
		}))
	return l, nil
}

// relating is the write of a link, unlink or rectification event, before
// its Other is set.
func relating(key consent.Key, kind consent.EventKind, actor, requestID string, captured, now time.Time, fp [32]byte) consent.Write {
	return consent.Write{
		Key: key,
		Event: consent.Event{
			Kind:      kind,
			Proof:     consent.Proof{CapturedAt: captured.UTC(), Actor: actor, RecordedAt: now.UTC()},
			RequestID: requestID,
		},
		Fingerprint: fp,
	}
}

// checkLinks refuses a link that would give an identifier more than
// consent.MaxLinks links or a person more than maxPerson identifiers,
// reading both sides' persons.
func (s *Server) checkLinks(ctx context.Context, l link) error {
	members, err := s.person(ctx, l.self)
	if err != nil {
		return err
	}
	recs := map[consent.Key]*consent.Record{}
	for _, m := range members {
		recs[m.link.Key] = m.rec
	}
	selfRec := members[0].rec
	added := 0
	for i, o := range l.others {
		if _, ok := recs[o.Key]; !ok {
			// Another person joins this one.
			om, err := s.person(ctx, o)
			if errors.Is(err, errPersonTooLarge) {
				return consent.Invalid(fmt.Sprintf("others[%d]", i), "its person already has more than %d identifiers", maxPerson)
			}
			if err != nil {
				return err
			}
			for _, m := range om {
				recs[m.link.Key] = m.rec
			}
		}
		if !selfRec.Linked(o.Key) {
			added++
			if r := recs[o.Key]; len(r.Links) >= consent.MaxLinks {
				return consent.Invalid(fmt.Sprintf("others[%d]", i), "already has %d links, the most an identifier may have", len(r.Links))
			}
		}
	}
	if n := len(selfRec.Links) + added; n > consent.MaxLinks {
		return consent.Invalid("others", "would give contact %d links, at most %d are allowed", n, consent.MaxLinks)
	}
	if len(recs) > maxPerson {
		return consent.Invalid("others", "would make a person of %d identifiers, at most %d are allowed", len(recs), maxPerson)
	}
	return nil
}

func (s *consentService) LinkIdentifiers(ctx context.Context, req *pb.LinkIdentifiersRequest) (*pb.LinkIdentifiersResponse, error) {
	l, err := s.linkRequest(req)
	if err != nil {
		return nil, toStatus(err)
	}
	out, err := s.link(ctx, l)
	if err != nil {
		return nil, toStatus(err)
	}
	return out, nil
}

// link writes l: each link on both sides, after checking the bounds.
func (s *Server) link(ctx context.Context, l link) (*pb.LinkIdentifiersResponse, error) {
	if err := s.checkLinks(ctx, l); err != nil {
		return nil, err
	}
	l.w.Caller, _ = CallerFrom(ctx)
	out := &pb.LinkIdentifiersResponse{Identifier: identifierPB(l.self)}
	for _, o := range l.others {
		// The other side first: a request that stops half way leaves no
		// link on contact that its retry would not make again.
		ow := part(l.w, "link", o.Key[:], l.self.Key[:])
		ow.Key, ow.Event.Other = o.Key, l.self
		tok, err := s.cfg.Store.Apply(ctx, ow)
		if err != nil {
			return nil, err
		}
		out.Others = append(out.Others, &pb.IdentifierWrite{Identifier: identifierPB(o), ConsistencyToken: s.issue(tok)})
		sw := part(l.w, "link", l.self.Key[:], o.Key[:])
		sw.Event.Other = o
		if tok, err = s.cfg.Store.Apply(ctx, sw); err != nil {
			return nil, err
		}
		out.ConsistencyToken = s.issue(tok)
	}
	return out, nil
}

func (s *consentService) UnlinkIdentifier(ctx context.Context, req *pb.UnlinkIdentifierRequest) (*pb.UnlinkIdentifierResponse, error) {
	self, w, err := s.unlinkRequest(req)
	if err != nil {
		return nil, toStatus(err)
	}
	out, err := s.unlink(ctx, self, w)
	if err != nil {
		return nil, toStatus(err)
	}
	return out, nil
}

// unlinkRequest parses an UnlinkIdentifier request: the contact and the
// event every write shares, keyed to it.
func (s *Server) unlinkRequest(req *pb.UnlinkIdentifierRequest) (consent.Link, consent.Write, error) {
	now := s.cfg.Now()
	self, err := s.identify("contact", req.GetContact())
	if err != nil {
		return self, consent.Write{}, err
	}
	if err := labels("actor", req.GetActor(), "request_id", req.GetRequestId()); err != nil {
		return self, consent.Write{}, err
	}
	captured, err := s.capturedAt("captured_at", req.GetCapturedAt(), now)
	if err != nil {
		return self, consent.Write{}, err
	}
	return self, relating(self.Key, consent.EventUnlink, req.GetActor(), req.GetRequestId(), captured, now,
		fingerprint(req, func(m proto.Message) { m.(*pb.UnlinkIdentifierRequest).Contact = "" })), nil
}

// unlink writes w, self's unlink, on both sides of each of self's links.
func (s *Server) unlink(ctx context.Context, self consent.Link, w consent.Write) (*pb.UnlinkIdentifierResponse, error) {
	w.Caller, _ = CallerFrom(ctx)
	rec, err := s.cfg.Records.Get(ctx, self.Key, consent.Consistency{Mode: consent.FullyConsistent})
	if err != nil {
		return nil, err
	}
	out := &pb.UnlinkIdentifierResponse{ConsistencyToken: s.issue(rec.Token)}
	for _, o := range rec.Links {
		// The other side first, as in LinkIdentifiers: a retry finds the
		// link on contact until both sides are unlinked.
		ow := part(w, "unlink", o.Key[:], self.Key[:])
		ow.Key, ow.Event.Other = o.Key, self
		tok, err := s.cfg.Store.Apply(ctx, ow)
		if err != nil {
			return nil, err
		}
		out.Others = append(out.Others, &pb.IdentifierWrite{Identifier: identifierPB(o), ConsistencyToken: s.issue(tok)})
		sw := part(w, "unlink", self.Key[:], o.Key[:])
		sw.Event.Other = o
		if tok, err = s.cfg.Store.Apply(ctx, sw); err != nil {
			return nil, err
		}
		out.ConsistencyToken = s.issue(tok)
	}
	return out, nil
}

// rectification is a parsed Rectify request.
type rectification struct {
	old, new consent.Link
	w        consent.Write // RectifyFrom on the new identifier
	now      time.Time
}

func (s *Server) rectifyRequest(req *pb.RectifyRequest) (rectification, error) {
	now := s.cfg.Now()
	old, err := s.identify("old_contact", req.GetOldContact())
	if err != nil {
		return rectification{}, err
	}
	nu, err := s.identify("new_contact", req.GetNewContact())
	if err != nil {
		return rectification{}, err
	}
	if nu.Key == old.Key {
		return rectification{}, consent.Invalid("new_contact", "is the same identifier as old_contact")
	}
	if err := labels("actor", req.GetActor(), "evidence_ref", req.GetEvidenceRef(), "request_id", req.GetRequestId()); err != nil {
		return rectification{}, err
	}
	captured, err := s.capturedAt("captured_at", req.GetCapturedAt(), now)
	if err != nil {
		return rectification{}, err
	}
	w := relating(nu.Key, consent.EventRectifyFrom, req.GetActor(), req.GetRequestId(), captured, now,
		fingerprint(req, func(m proto.Message) {
			m.(*pb.RectifyRequest).OldContact, m.(*pb.RectifyRequest).NewContact = "", ""
		}))
	w.Event.Proof.EvidenceRef = req.GetEvidenceRef()
	w.Event.Other = old
	return rectification{old: old, new: nu, w: w, now: now.UTC()}, nil
}

func (s *consentService) Rectify(ctx context.Context, req *pb.RectifyRequest) (*pb.RectifyResponse, error) {
	r, err := s.rectifyRequest(req)
	if err != nil {
		return nil, toStatus(err)
	}
	newTok, oldTok, err := s.rectify(ctx, r)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.RectifyResponse{NewConsistencyToken: s.issue(newTok), OldConsistencyToken: s.issue(oldTok)}, nil
}

// rectify carries r.old's consents to r.new and marks r.old moved,
// returning the last write's token on each.
func (s *Server) rectify(ctx context.Context, r rectification) (newTok, oldTok consent.ConsistencyToken, err error) {
	var none consent.ConsistencyToken
	r.w.Caller, _ = CallerFrom(ctx)
	recs := make([]*consent.Record, 2)
	if err := s.cfg.Records.GetMany(ctx, []consent.Key{r.old.Key, r.new.Key}, consent.Consistency{Mode: consent.FullyConsistent}, recs); err != nil {
		return none, none, err
	}
	old, nu := recs[0], recs[1]
	switch {
	// (Unless old already names nu: a retry of a rectification that an
	// erasure of old overtook is a replay.)
	case old != nil && !old.ErasedAt.IsZero() && len(old.Purposes) == 0 && !old.Linked(r.new.Key):
		return none, none, fmt.Errorf("%w: old_contact was erased and has no consent to carry", consent.ErrSuppressed)
	case nu != nil && !nu.ErasedAt.IsZero():
		return none, none, fmt.Errorf("%w: new_contact was erased: record its consent anew, as the person gives it, rather than carry older consent to it", consent.ErrSuppressed)
	}
	// Room for the link on both sides, checked before anything is written:
	// a link refused half way would carry consents to the new identifier
	// and leave the old one unmarked, still answering ALLOW.
	for _, side := range []struct {
		field string
		rec   *consent.Record
		other consent.Key
	}{{"old_contact", old, r.new.Key}, {"new_contact", nu, r.old.Key}} {
		if side.rec != nil && !side.rec.Linked(side.other) && len(side.rec.Links) >= consent.MaxLinks {
			return none, none, consent.Invalid(side.field, "already has %d links, the most an identifier may have: unlink one (UnlinkIdentifier) first", len(side.rec.Links))
		}
	}
	from, err := s.carriedFrom(ctx, old, r.old.Key, r.new.Key)
	if err != nil {
		return none, none, err
	}
	if newTok, err = s.carry(ctx, r, from, nil, true); err != nil {
		return none, none, err
	}
	to := part(r.w, "rectify-to", r.old.Key[:], r.new.Key[:])
	to.Key, to.Event.Kind, to.Event.Other = r.old.Key, consent.EventRectifyTo, r.new
	if oldTok, err = s.cfg.Store.Apply(ctx, to); err != nil {
		return none, none, err
	}
	// A withdrawal on the old identifier that landed after it was read
	// above and before RECTIFY_TO withdrew the consent carried: the old
	// identifier's state just before RECTIFY_TO, read again, carries it;
	// one that lands after RECTIFY_TO follows the move itself (follow).
	moved, err := s.cfg.Records.Get(ctx, r.old.Key, consent.Consistency{Mode: consent.FullyConsistent})
	if err != nil {
		return none, none, err
	}
	last, err := s.carriedFrom(ctx, moved, r.old.Key, r.new.Key)
	if err != nil {
		return none, none, err
	}
	tok, err := s.carry(ctx, r, last, from, false)
	if err != nil {
		return none, none, err
	}
	if tok != none {
		newTok = tok
	}
	return newTok, oldTok, nil
}

// carry writes on the new identifier, as one batch, the events that give
// it from's consents, except those already carried from done; with
// rectifyFrom, then the RECTIFY_FROM event that says where they came from
// (in history order, so they land together). It returns the token of the
// last write, zero if there was nothing to write.
func (s *Server) carry(ctx context.Context, r rectification, from, done *consent.Record, rectifyFrom bool) (consent.ConsistencyToken, error) {
	skip := map[string]bool{}
	for _, e := range carried(done) {
		skip[string(eventDigest(&e))] = true
	}
	var batch []consent.Write
	for _, e := range carried(from) {
		d := eventDigest(&e)
		if skip[string(d)] {
			continue
		}
		w := part(r.w, "rectify", r.new.Key[:], d)
		e.RequestID = w.Event.RequestID
		if e.Kind == consent.EventWithdraw {
			e.Proof.Actor, e.Proof.RecordedAt = r.w.Event.Proof.Actor, r.now
		}
		w.Event = e
		batch = append(batch, w)
	}
	if rectifyFrom {
		batch = append(batch, part(r.w, "rectify-from", r.new.Key[:], r.old.Key[:]))
	}
	if len(batch) == 0 {
		return consent.ConsistencyToken{}, nil
	}
	toks, errs, err := s.cfg.Store.ApplyBatch(ctx, batch)
	if err != nil {
		return consent.ConsistencyToken{}, err
	}
	for _, err := range errs {
		if err != nil {
			return consent.ConsistencyToken{}, err
		}
	}
	return toks[len(toks)-1], nil
}

// carriedFrom is old's record as a rectification to nu carries it: the
// record itself, or, when old already names nu (a retry of this
// rectification, or one before it), the record folded from old's history
// up to its first RECTIFY_TO naming nu. That event withdrew every purpose
// on old; carried back to nu, it would block the new identifier too, and a
// retried Rectify would not be a replay.
func (s *Server) carriedFrom(ctx context.Context, old *consent.Record, oldKey, nu consent.Key) (*consent.Record, error) {
	if old == nil || !old.Linked(nu) {
		return old, nil
	}
	var (
		rec   consent.Record
		after consent.ConsistencyToken
	)
	for {
		events, more, err := s.cfg.Store.Events(ctx, oldKey, after, maxPageSize)
		if err != nil {
			return nil, err
		}
		for i := range events {
			e := &events[i]
			if e.Kind == consent.EventRectifyTo && e.Other.Key == nu {
				return &rec, nil
			}
			// The history is what the record was folded from: an event
			// Apply refuses now was refused then, and is not there.
			if next, err := consent.Apply(rec, *e); err == nil {
				rec = next
			}
		}
		if !more || len(events) == 0 {
			return old, nil
		}
		after = events[len(events)-1].Token
	}
}

// carried returns the events that give a new identifier old's consents:
// its grants with their original proofs (one event per proof, so a grant
// that covered several purposes is carried as one), its withdrawals of
// purposes and of every purpose at their original times, oldest first. A
// record keeps only when a withdrawal was made, so that is all a carried
// withdrawal says.
func carried(old *consent.Record) []consent.Event {
	if old == nil {
		return nil
	}
	names := make([]string, 0, len(old.Purposes))
	for n := range old.Purposes {
		names = append(names, n)
	}
	slices.Sort(names)
	var out []consent.Event
	add := func(e consent.Event, same func(*consent.Event) bool) {
		for i := range out {
			if out[i].Kind == e.Kind && len(out[i].Purposes) > 0 && same(&out[i]) {
				out[i].Purposes = append(out[i].Purposes, e.Purposes...)
				return
			}
		}
		out = append(out, e)
	}
	for _, n := range names {
		pr := old.Purposes[n]
		if g := pr.Grant; g != nil {
			add(consent.Event{Kind: consent.EventGrant, Purposes: []string{n}, Proof: *g},
				func(e *consent.Event) bool { return e.Proof == *g })
		}
		if t := pr.WithdrawnAt; !t.IsZero() {
			add(consent.Event{Kind: consent.EventWithdraw, Purposes: []string{n}, Proof: consent.Proof{CapturedAt: t}},
				func(e *consent.Event) bool { return e.Proof.CapturedAt.Equal(t) })
		}
	}
	if !old.WithdrawnAllAt.IsZero() {
		out = append(out, consent.Event{Kind: consent.EventWithdraw, Proof: consent.Proof{CapturedAt: old.WithdrawnAllAt}})
	}
	// An erasure of the old identifier (one that landed while it was being
	// moved) is not carried as an erasure, which would take the new
	// identifier's own history, but as the withdrawal it includes: no
	// consent carried from before it may answer ALLOW.
	if !old.ErasedAt.IsZero() {
		out = append(out, consent.Event{Kind: consent.EventWithdraw, Proof: consent.Proof{CapturedAt: old.ErasedAt}})
	}
	at := func(e *consent.Event) time.Time {
		if e.Kind == consent.EventGrant {
			return e.Proof.EffectiveAt()
		}
		return e.Proof.CapturedAt
	}
	// A grant before a withdrawal of the same time, as they were most
	// likely made; Apply orders them by time whatever the order here.
	slices.SortStableFunc(out, func(a, b consent.Event) int {
		if c := at(&a).Compare(at(&b)); c != 0 {
			return c
		}
		return int(a.Kind) - int(b.Kind)
	})
	return out
}

// eventDigest identifies a carried event by what it carries (not when it
// was carried), so a retried Rectify derives the same request ids for the
// events it carried before, and new ones for consents given since.
func eventDigest(e *consent.Event) []byte {
	h := sha256.New()
	p := &e.Proof
	fmt.Fprintf(h, "%d\x00%q\x00%d %d %q %q %q %t", e.Kind, e.Purposes, p.Method, p.Source, p.ThirdParty, p.EvidenceRef, p.NoticeVersion, p.Bundled)
	for _, t := range []time.Time{p.CapturedAt, p.ExpiresAt} {
		fmt.Fprintf(h, " %d.%d", t.Unix(), t.Nanosecond())
	}
	if e.Kind == consent.EventGrant {
		fmt.Fprintf(h, " %q %d.%d", p.Actor, p.RecordedAt.Unix(), p.RecordedAt.Nanosecond())
	}
	return h.Sum(nil)
}

// Conversions to the wire.

func identifierPB(l consent.Link) *pb.Identifier {
	return &pb.Identifier{Key: l.Key.String(), Kind: pb.IdentifierKind(l.Kind)}
}

func identifiersPB(ls []consent.Link) []*pb.Identifier {
	out := make([]*pb.Identifier, len(ls))
	for i, l := range ls {
		out[i] = identifierPB(l)
	}
	return out
}

// purposeStates is a record's state for every registered purpose, in
// registry order.
func (s *Server) purposeStates(rec *consent.Record, now time.Time) []*pb.PurposeState {
	all := s.cfg.Purposes.All()
	out := make([]*pb.PurposeState, 0, len(all))
	for i := range all {
		p := &all[i]
		d := consent.Decide(rec, p, now)
		st := &pb.PurposeState{Purpose: p.Name, Decision: decisionPB(d), Reason: pb.Reason(d.Reason), WithdrawnAt: timePB(rec.Withdrawn(p.Name))}
		if g := rec.Purposes[p.Name].Grant; g != nil {
			st.Grant = proofPB(g)
		}
		out = append(out, st)
	}
	return out
}

// parseKey parses an identifier's key as Identifier.key shows it.
func parseKey(field, text string) (consent.Key, error) {
	var k consent.Key
	b, err := hex.DecodeString(text)
	if err != nil || len(b) != len(k) {
		return k, consent.Invalid(field, "must be an identifier's key: %d hex digits", 2*len(k))
	}
	copy(k[:], b)
	return k, nil
}
