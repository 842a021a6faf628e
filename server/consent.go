package server

import (
	"context"

	consent "github.com/consentd/consentd"
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
	return &pb.GrantResponse{Token: tok.String()}, nil
}

func (s *consentService) Withdraw(ctx context.Context, req *pb.WithdrawRequest) (*pb.WithdrawResponse, error) {
	tok, err := s.write(ctx, func() (consent.Write, error) { return s.withdrawWrite(req) })
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.WithdrawResponse{Token: tok.String()}, nil
}

func (s *consentService) Erase(ctx context.Context, req *pb.EraseRequest) (*pb.EraseResponse, error) {
	tok, err := s.write(ctx, func() (consent.Write, error) { return s.eraseWrite(req) })
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.EraseResponse{Token: tok.String()}, nil
}

// write is the one way consent changes, from gRPC and from unsubscribe links
// alike: parse the request into a Write (refusing bad input before anything
// is touched), then have the store apply it, which checks the request id,
// appends the history, feeds the change to every sidecar's cache and drops
// this one's copy. Errors come back unmapped, for the caller's protocol.
func (s *Server) write(ctx context.Context, parse func() (consent.Write, error)) (consent.Token, error) {
	w, err := parse()
	if err != nil {
		return consent.Token{}, err
	}
	return s.cfg.Store.Apply(ctx, w)
}

func (s *consentService) GetContact(ctx context.Context, req *pb.GetContactRequest) (*pb.GetContactResponse, error) {
	key, err := s.key("contact", req.GetContact())
	if err != nil {
		return nil, toStatus(err)
	}
	rec, err := s.cfg.Records.Get(ctx, key, consent.Consistency{Mode: consent.FullyConsistent})
	if err != nil {
		return nil, toStatus(err)
	}
	now := s.cfg.Now()
	out := &pb.GetContactResponse{ErasedAt: timePB(rec.ErasedAt), Token: rec.Token.String()}
	for i := range s.cfg.Purposes.All() {
		p := &s.cfg.Purposes.All()[i]
		d := consent.Decide(rec, p, now)
		st := &pb.PurposeState{Purpose: p.Name, Decision: decisionPB(d), Reason: pb.Reason(d.Reason), WithdrawnAt: timePB(rec.Withdrawn(p.Name))}
		if g := rec.Purposes[p.Name].Grant; g != nil {
			st.Grant = proofPB(g)
		}
		out.Purposes = append(out.Purposes, st)
	}
	return out, nil
}

func (s *consentService) ListEvents(ctx context.Context, req *pb.ListEventsRequest) (*pb.ListEventsResponse, error) {
	key, err := s.key("contact", req.GetContact())
	if err != nil {
		return nil, toStatus(err)
	}
	size, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, toStatus(err)
	}
	after, err := pageToken(req.GetPageToken())
	if err != nil {
		return nil, toStatus(err)
	}
	events, more, err := s.cfg.Store.Events(ctx, key, after, size)
	if err != nil {
		return nil, toStatus(err)
	}
	out := &pb.ListEventsResponse{Events: make([]*pb.Event, len(events))}
	for i := range events {
		out.Events[i] = eventPB(&events[i])
	}
	if more {
		out.NextPageToken = events[len(events)-1].Token.String()
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
