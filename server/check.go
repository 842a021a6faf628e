package server

import (
	"context"
	"errors"
	"io"
	"runtime"
	"strconv"
	"sync"
	"time"

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
	vs, err := s.judge(ctx, req.GetContacts(), p, cons)
	if err != nil {
		return nil, toStatus(err)
	}
	results := make([]pb.BatchCheckResult, len(vs))
	out := &pb.BatchCheckResponse{Results: make([]*pb.BatchCheckResult, len(vs))}
	for i, v := range vs {
		if v.invalid != nil {
			return nil, toStatus(&consent.FieldError{Field: contactField(i), Reason: v.invalid.Error()})
		}
		results[i].Decision, results[i].Reason = decisionPB(v.d), pb.Reason(v.d.Reason)
		out.Results[i] = &results[i]
	}
	return out, nil
}

// FilterAudience answers each request message with the allowed contacts of
// that message, in order, so memory stays bounded by a few messages and gRPC
// flow control paces a sender that outruns the checks. A malformed contact is
// counted as invalid and never allowed; it does not end the stream.
//
// Up to filterDepth messages are worked on at once: while one waits for the
// store, the next is being keyed and the one before is being sent.
func (s *checkService) FilterAudience(stream pb.CheckService_FilterAudienceServer) error {
	queue := make(chan *filterWork, filterDepth)
	// The receiver ends when the stream does: at the client's last message,
	// or when this handler returns, which ends the stream's context.
	go s.receiveAudience(stream, queue)
	var sum summary
	for w := range queue {
		<-w.done
		if w.err != nil {
			return w.err
		}
		sum.total += uint64(len(w.contacts))
		resp := &pb.FilterAudienceResponse{}
		for i, v := range w.vs {
			switch {
			case v.invalid != nil:
				sum.invalid++
			case v.d.Allowed:
				resp.Allowed = append(resp.Allowed, w.contacts[i])
				fallthrough
			default:
				sum.reasons[v.d.Reason]++
			}
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
	return stream.Send(&pb.FilterAudienceResponse{Summary: sum.proto()})
}

// filterDepth is how many request messages of one stream are in progress at
// once.
const filterDepth = 4

// filterWork is one request message of an audience, judged in the
// background; done is closed when vs or err is set.
type filterWork struct {
	contacts []string
	vs       []verdict
	err      error // a status for the client: ends the stream
	done     chan struct{}
}

// receiveAudience reads the stream's messages and starts judging each,
// queueing them in order. A bad message is queued as an error, after the
// messages before it, and ends the reading.
func (s *checkService) receiveAudience(stream pb.CheckService_FilterAudienceServer, queue chan<- *filterWork) {
	defer close(queue)
	ctx := stream.Context()
	var (
		p    *consent.Purpose
		cons consent.Consistency
	)
	for {
		w := &filterWork{done: make(chan struct{})}
		req, err := stream.Recv()
		switch {
		case errors.Is(err, io.EOF):
			return
		case err != nil:
			w.err = err
		case p == nil:
			if p, cons, err = s.question(req.GetPurpose(), req.GetConsistency()); err != nil {
				w.err = toStatus(err)
			}
		case req.GetPurpose() != "" && req.GetPurpose() != p.Name:
			w.err = toStatus(consent.Invalid("purpose", "changed from %q to %q mid-stream", p.Name, req.GetPurpose()))
		}
		if w.err == nil && len(req.GetContacts()) > consent.MaxBatch {
			w.err = toStatus(consent.Invalid("contacts", "has %d contacts, at most %d are allowed per message", len(req.GetContacts()), consent.MaxBatch))
		}
		bad := w.err != nil
		if bad {
			close(w.done)
		} else {
			w.contacts = req.GetContacts()
			go func() {
				defer close(w.done)
				if w.vs, w.err = s.judge(ctx, w.contacts, p, cons); w.err != nil {
					w.err = toStatus(w.err)
				}
			}()
		}
		select {
		case queue <- w:
		case <-ctx.Done():
			return
		}
		if bad {
			return
		}
	}
}

// verdict is one contact's outcome in a batch.
type verdict struct {
	invalid error // the contact is malformed, and d means nothing
	d       consent.Decision
}

// piece is the fewest contacts worth a goroutine of their own: below it, the
// hand-off costs more than the keying saves.
const piece = 256

// judge keys and decides every contact. A batch is split across the cores
// (keying, an HMAC per contact, is most of the work when records are
// cached), and each part reads what the cache lacks in one store round trip.
func (s *checkService) judge(ctx context.Context, contacts []string, p *consent.Purpose, cons consent.Consistency) ([]verdict, error) {
	vs := make([]verdict, len(contacts))
	now := s.cfg.Now()
	parts := min(runtime.GOMAXPROCS(0), max(len(contacts)/piece, 1))
	if parts == 1 {
		return vs, s.judgePart(ctx, contacts, vs, p, cons, now)
	}
	var wg sync.WaitGroup
	errs := make([]error, parts)
	for i := range parts {
		lo, hi := i*len(contacts)/parts, (i+1)*len(contacts)/parts
		wg.Go(func() { errs[i] = s.judgePart(ctx, contacts[lo:hi], vs[lo:hi], p, cons, now) })
	}
	wg.Wait()
	return vs, errors.Join(errs...)
}

func (s *checkService) judgePart(ctx context.Context, contacts []string, vs []verdict, p *consent.Purpose, cons consent.Consistency, now time.Time) error {
	keys := make([]consent.Key, 0, len(contacts))
	valid := make([]int, 0, len(contacts)) // contacts[valid[j]] has keys[j]
	for i, c := range contacts {
		key, err := s.cfg.Keys.Key(c)
		if err != nil {
			vs[i].invalid = err
			continue
		}
		keys = append(keys, key)
		valid = append(valid, i)
	}
	recs := make([]*consent.Record, len(keys))
	if err := s.cfg.Records.GetMany(ctx, keys, cons, recs); err != nil {
		return err
	}
	for j, r := range recs {
		vs[valid[j]].d = consent.Decide(r, p, now)
	}
	return nil
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
