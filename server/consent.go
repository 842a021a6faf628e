package server

import (
	"context"

	"google.golang.org/grpc/status"

	"github.com/consentd/consentd/consent"
	pb "github.com/consentd/consentd/proto/consent/v1"
)

type consentService struct {
	pb.UnimplementedConsentServiceServer
	*Server
}

var _ pb.ConsentServiceServer = (*consentService)(nil)

func (s *consentService) Grant(ctx context.Context, req *pb.GrantRequest) (*pb.GrantResponse, error) {
	tok, err := s.write(ctx, func() (consent.Write, error) { return s.grantWrite(req) })
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.GrantResponse{ConsistencyToken: s.issue(tok)}, nil
}

func (s *consentService) Withdraw(ctx context.Context, req *pb.WithdrawRequest) (*pb.WithdrawResponse, error) {
	var w consent.Write
	tok, others, err := s.scoped(ctx, req.GetScope(), req.GetContact(), "withdraw", func() (consent.Write, error) {
		var err error
		w, err = s.withdrawWrite(req)
		return w, err
	})
	if err != nil {
		return nil, toStatus(err)
	}
	// A person-wide withdrawal wrote on every identifier moved to already:
	// a rectification links the two.
	if person, _ := scope(req.GetScope()); !person {
		moved, err := s.follow(ctx, w)
		if err != nil {
			return nil, toStatus(err)
		}
		others = append(others, moved...)
	}
	return &pb.WithdrawResponse{ConsistencyToken: s.issue(tok), Others: others}, nil
}

func (s *consentService) Erase(ctx context.Context, req *pb.EraseRequest) (*pb.EraseResponse, error) {
	tok, others, err := s.scoped(ctx, req.GetScope(), req.GetContact(), "erase", func() (consent.Write, error) { return s.eraseWrite(req) })
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.EraseResponse{ConsistencyToken: s.issue(tok), Others: others}, nil
}

// scoped is write for a request with a scope: on the contact alone, or on
// every identifier of its person (spread), role naming the writes.
func (s *Server) scoped(ctx context.Context, sc pb.Scope, contact, role string, parse func() (consent.Write, error)) (consent.ConsistencyToken, []*pb.IdentifierWrite, error) {
	w, err := parse()
	if err != nil {
		return consent.ConsistencyToken{}, nil, err
	}
	person, err := scope(sc)
	if err != nil {
		return consent.ConsistencyToken{}, nil, err
	}
	if !person {
		tok, err := s.write(ctx, func() (consent.Write, error) { return w, nil })
		return tok, nil, err
	}
	self, err := s.identify("contact", contact)
	if err != nil {
		return consent.ConsistencyToken{}, nil, err
	}
	return s.spread(ctx, w, self, role)
}

// write is how one request changes consent, from gRPC and from unsubscribe
// links alike: parse the request into a Write (refusing bad input before
// anything is touched), then have the store apply it, which checks the
// request id, appends the history, feeds the change to every sidecar's
// cache and drops this one's copy. WriteBatch parses each of its writes with
// the same functions and hands them to the store's ApplyBatch, of which
// Apply is a batch of one. Errors come back unmapped, for the caller's
// protocol. Request ids are the caller's (no caller: one shared space).
func (s *Server) write(ctx context.Context, parse func() (consent.Write, error)) (consent.ConsistencyToken, error) {
	w, err := parse()
	if err != nil {
		return consent.ConsistencyToken{}, err
	}
	w.Caller, _ = CallerFrom(ctx)
	return s.cfg.Store.Apply(ctx, w)
}

func (s *consentService) GetContact(ctx context.Context, req *pb.GetContactRequest) (*pb.GetContactResponse, error) {
	self, err := s.identify("contact", req.GetContact())
	if err != nil {
		return nil, toStatus(err)
	}
	person, err := scope(req.GetScope())
	if err != nil {
		return nil, toStatus(err)
	}
	var members []member
	if person {
		members, err = s.person(ctx, self)
	} else {
		var rec *consent.Record
		rec, err = s.cfg.Records.Get(ctx, self.Key, consent.Consistency{Mode: consent.FullyConsistent})
		members = []member{{link: self, rec: rec}}
	}
	if err != nil {
		return nil, toStatus(err)
	}
	now := s.cfg.Now()
	rec := members[0].rec
	out := &pb.GetContactResponse{Purposes: s.purposeStates(rec, now), ErasedAt: timePB(rec.ErasedAt), ConsistencyToken: s.issue(rec.Token),
		Identifier: identifierPB(self), Links: identifiersPB(rec.Links)}
	for _, m := range members[1:] {
		out.Person = append(out.Person, &pb.IdentifierState{Identifier: identifierPB(m.link), Purposes: s.purposeStates(m.rec, now),
			ErasedAt: timePB(m.rec.ErasedAt), ConsistencyToken: s.issue(m.rec.Token), Links: identifiersPB(m.rec.Links)})
	}
	return out, nil
}

// historyKey is the key whose history ListEvents lists: contact's, or,
// with identifier_key, that of another identifier of contact's person.
func (s *Server) historyKey(ctx context.Context, req *pb.ListEventsRequest) (consent.Key, error) {
	if req.GetIdentifierKey() == "" {
		return s.key("contact", req.GetContact())
	}
	self, err := s.identify("contact", req.GetContact())
	if err != nil {
		return consent.Key{}, err
	}
	key, err := parseKey("identifier_key", req.GetIdentifierKey())
	if err != nil {
		return key, err
	}
	members, err := s.person(ctx, self)
	if err != nil {
		return key, err
	}
	for _, m := range members {
		if m.link.Key == key {
			return key, nil
		}
	}
	return key, consent.Invalid("identifier_key", "is not an identifier of contact's person")
}

func (s *consentService) ListEvents(ctx context.Context, req *pb.ListEventsRequest) (*pb.ListEventsResponse, error) {
	size, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, toStatus(err)
	}
	after, err := s.pageToken(req.GetPageToken())
	if err != nil {
		return nil, toStatus(err)
	}
	key, err := s.historyKey(ctx, req)
	if err != nil {
		return nil, toStatus(err)
	}
	events, more, err := s.cfg.Store.Events(ctx, key, after, size)
	if err != nil {
		return nil, toStatus(err)
	}
	out := &pb.ListEventsResponse{Events: make([]*pb.Event, len(events))}
	for i := range events {
		out.Events[i] = s.eventPB(&events[i])
	}
	if more {
		out.NextPageToken = s.issue(events[len(events)-1].Token)
	}
	return out, nil
}

func (s *consentService) ListPurposes(context.Context, *pb.ListPurposesRequest) (*pb.ListPurposesResponse, error) {
	out := &pb.ListPurposesResponse{}
	for _, p := range s.cfg.Purposes.All() {
		out.Purposes = append(out.Purposes, &pb.Purpose{
			Name: p.Name, Description: p.Description, ReconfirmMonths: int32(p.ReconfirmMonths),
			ThirdPartyAllowed: p.ThirdPartyAllowed, RetentionMonths: int32(p.RetentionMonths),
		})
	}
	return out, nil
}

func (s *consentService) VerifyHistory(ctx context.Context, _ *pb.VerifyHistoryRequest) (*pb.VerifyHistoryResponse, error) {
	parts, err := s.cfg.Store.VerifyHistory(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	out := &pb.VerifyHistoryResponse{Intact: consent.Intact(parts), Partitions: make([]*pb.PartitionHistory, len(parts))}
	for i, p := range parts {
		ph := &pb.PartitionHistory{Partition: p.Partition, HeadSeq: p.HeadSeq, HeadLink: p.HeadLink[:],
			Events: uint64(p.Events), ErasedEvents: uint64(p.Erased), Contacts: uint64(p.Contacts)}
		for _, b := range p.Breaks {
			ph.Breaks = append(ph.Breaks, &pb.HistoryBreak{Seq: b.Seq, Problem: b.Problem})
		}
		if len(ph.Breaks) > 0 {
			ph.FirstBreak = ph.Breaks[0]
		}
		ph.BreakCount = uint64(p.BreakCount)
		out.Partitions[i] = ph
	}
	return out, nil
}

func (s *consentService) WriteBatch(ctx context.Context, req *pb.WriteBatchRequest) (*pb.WriteBatchResponse, error) {
	writes := req.GetWrites()
	if len(writes) > consent.MaxBatch {
		return nil, toStatus(consent.Invalid("writes", "has %d writes, at most %d are allowed", len(writes), consent.MaxBatch))
	}
	// Each write is parsed as if sent alone, its bad input its own outcome,
	// keyed in parallel (the keyed hash is most of a write's CPU).
	parsed := make([]consent.Write, len(writes))
	errs := make([]error, len(writes))
	_ = inParts(len(writes), func(lo, hi int) error {
		for i := lo; i < hi; i++ {
			parsed[i], errs[i] = s.batchWrite(writes[i])
		}
		return nil
	})
	var (
		ws  []consent.Write
		idx []int
	)
	caller, _ := CallerFrom(ctx)
	for i := range writes {
		if errs[i] == nil {
			parsed[i].Caller = caller
			ws, idx = append(ws, parsed[i]), append(idx, i)
		}
	}
	toks := make([]consent.ConsistencyToken, len(writes))
	if len(ws) > 0 {
		applied, applyErrs, err := s.cfg.Store.ApplyBatch(ctx, ws)
		if err != nil {
			return nil, toStatus(err)
		}
		for j, i := range idx {
			toks[i], errs[i] = applied[j], applyErrs[j]
		}
		s.followBatch(ctx, writes, parsed, errs)
	}
	out := &pb.WriteBatchResponse{Results: make([]*pb.WriteResult, len(writes))}
	for i := range writes {
		r := &pb.WriteResult{}
		if errs[i] != nil {
			st := status.Convert(toStatus(errs[i]))
			r.Code, r.Message = uint32(st.Code()), st.Message()
		} else {
			r.ConsistencyToken = s.issue(toks[i])
		}
		out.Results[i] = r
	}
	return out, nil
}

// batchWrite parses one write of a batch.
func (s *Server) batchWrite(w *pb.BatchWrite) (consent.Write, error) {
	switch w := w.GetWrite().(type) {
	case *pb.BatchWrite_Grant:
		return s.grantWrite(w.Grant)
	case *pb.BatchWrite_Withdraw:
		if person, err := scope(w.Withdraw.GetScope()); err != nil || person {
			return consent.Write{}, consent.Invalid("scope", "must be SCOPE_IDENTIFIER in a batch: send a person-wide withdrawal as Withdraw")
		}
		return s.withdrawWrite(w.Withdraw)
	}
	return consent.Write{}, consent.Invalid("write", "must be a grant or a withdraw")
}

// followBatch follows the batch's applied withdrawals to where their
// identifiers moved (follow). One read of every withdrawn identifier, after
// the batch was written, finds the few that moved, so a batch of thousands
// of withdrawals costs one store round trip more, not one per write. A
// failure to follow is the write's: its retry applies it once and follows
// again.
func (s *consentService) followBatch(ctx context.Context, writes []*pb.BatchWrite, parsed []consent.Write, errs []error) {
	var (
		keys []consent.Key
		idx  []int
	)
	for i := range writes {
		if _, ok := writes[i].GetWrite().(*pb.BatchWrite_Withdraw); ok && errs[i] == nil {
			keys, idx = append(keys, parsed[i].Key), append(idx, i)
		}
	}
	if len(keys) == 0 {
		return
	}
	recs := make([]*consent.Record, len(keys))
	if err := s.cfg.Records.GetMany(ctx, keys, consent.Consistency{Mode: consent.FullyConsistent}, recs); err != nil {
		for _, i := range idx {
			errs[i] = err
		}
		return
	}
	for j, i := range idx {
		if recs[j] != nil && recs[j].MovedTo != (consent.Key{}) {
			_, errs[i] = s.follow(ctx, parsed[i])
		}
	}
}
