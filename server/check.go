package server

import (
	"context"
	"errors"
	"io"
	"strconv"

	consent "github.com/consentd/consentd"
	pb "github.com/consentd/consentd/proto/consent/v1"
)

type checkService struct {
	pb.UnimplementedCheckServiceServer
	*Server
}

var _ pb.CheckServiceServer = (*checkService)(nil)

func (s *checkService) Check(ctx context.Context, req *pb.CheckRequest) (*pb.CheckResponse, error) {
	p, cons, err := s.question(req.GetPurpose(), req.GetConsistency())
	if err != nil {
		return nil, toStatus(err)
	}
	key, err := s.key("contact", req.GetContact())
	if err != nil {
		return nil, toStatus(err)
	}
	rec, err := s.cfg.Records.Get(ctx, key, cons)
	if err != nil {
		return nil, toStatus(err)
	}
	d := consent.Decide(rec, p, s.cfg.Now())
	return &pb.CheckResponse{Decision: decisionPB(d), Reason: pb.Reason(d.Reason), Token: rec.Token.String()}, nil
}

func (s *checkService) BatchCheck(ctx context.Context, req *pb.BatchCheckRequest) (*pb.BatchCheckResponse, error) {
	p, cons, err := s.question(req.GetPurpose(), req.GetConsistency())
	if err != nil {
		return nil, toStatus(err)
	}
	if len(req.GetContacts()) > consent.MaxBatch {
		return nil, toStatus(consent.Invalid("contacts", "has %d contacts, at most %d are allowed", len(req.GetContacts()), consent.MaxBatch))
	}
	keys := make([]consent.Key, len(req.GetContacts()))
	for i, c := range req.GetContacts() {
		if keys[i], err = s.key(contactField(i), c); err != nil {
			return nil, toStatus(err)
		}
	}
	now := s.cfg.Now()
	results := make([]pb.BatchCheckResult, len(keys))
	out := &pb.BatchCheckResponse{Results: make([]*pb.BatchCheckResult, len(keys))}
	for i, k := range keys {
		rec, err := s.cfg.Records.Get(ctx, k, cons)
		if err != nil {
			return nil, toStatus(err)
		}
		d := consent.Decide(rec, p, now)
		results[i].Decision, results[i].Reason = decisionPB(d), pb.Reason(d.Reason)
		out.Results[i] = &results[i]
	}
	return out, nil
}

// FilterAudience answers each request message with the allowed contacts of
// that message, so memory stays bounded by one message and gRPC flow control
// paces a sender that outruns the checks. A malformed contact is counted as
// invalid and never allowed; it does not end the stream.
func (s *checkService) FilterAudience(stream pb.CheckService_FilterAudienceServer) error {
	ctx := stream.Context()
	var (
		p    *consent.Purpose
		cons consent.Consistency
		sum  summary
	)
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return stream.Send(&pb.FilterAudienceResponse{Summary: sum.proto()})
		}
		if err != nil {
			return err
		}
		switch {
		case p == nil:
			if p, cons, err = s.question(req.GetPurpose(), req.GetConsistency()); err != nil {
				return toStatus(err)
			}
		case req.GetPurpose() != "" && req.GetPurpose() != p.Name:
			return toStatus(consent.Invalid("purpose", "changed from %q to %q mid-stream", p.Name, req.GetPurpose()))
		}
		if len(req.GetContacts()) > consent.MaxBatch {
			return toStatus(consent.Invalid("contacts", "has %d contacts, at most %d are allowed per message", len(req.GetContacts()), consent.MaxBatch))
		}
		now := s.cfg.Now()
		resp := &pb.FilterAudienceResponse{}
		for _, c := range req.GetContacts() {
			sum.total++
			key, err := s.cfg.Keys.Key(c)
			if err != nil {
				sum.invalid++
				continue
			}
			rec, err := s.cfg.Records.Get(ctx, key, cons)
			if err != nil {
				return toStatus(err)
			}
			d := consent.Decide(rec, p, now)
			sum.reasons[d.Reason]++
			if d.Allowed {
				resp.Allowed = append(resp.Allowed, c)
			}
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

// question parses what every check asks: a known purpose and a freshness.
func (s *checkService) question(purpose string, c *pb.Consistency) (*consent.Purpose, consent.Consistency, error) {
	p, err := s.cfg.Purposes.Resolve("purpose", purpose)
	if err != nil {
		return nil, consent.Consistency{}, err
	}
	cons, err := parseConsistency(c)
	return p, cons, err
}

func contactField(i int) string { return "contacts[" + strconv.Itoa(i) + "]" }

type summary struct {
	total, invalid uint64
	reasons        [16]uint64
}

func (s *summary) proto() *pb.FilterAudienceSummary {
	out := &pb.FilterAudienceSummary{Total: s.total, Invalid: s.invalid, Allowed: s.reasons[consent.ReasonGranted]}
	for _, r := range consent.Reasons() {
		if n := s.reasons[r]; n > 0 {
			out.Reasons = append(out.Reasons, &pb.ReasonCount{Reason: pb.Reason(r), Count: n})
		}
	}
	return out
}
