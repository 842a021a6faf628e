package server

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"

	"github.com/consentd/consentd/consent"
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
	s.cfg.Decisions.Decided(p.Name, d.Reason, 1)
	return &pb.CheckResponse{Decision: decisionPB(d), Reason: pb.Reason(d.Reason), ConsistencyToken: s.issue(rec.Token)}, nil
}

func (s *checkService) BatchCheck(ctx context.Context, req *pb.BatchCheckRequest) (*pb.BatchCheckResponse, error) {
	p, cons, err := s.question(req.GetPurpose(), req.GetConsistency())
	if err != nil {
		return nil, toStatus(err)
	}
	if len(req.GetContacts()) > consent.MaxBatch {
		return nil, toStatus(consent.Invalid("contacts", "has %d contacts, at most %d are allowed", len(req.GetContacts()), consent.MaxBatch))
	}
	// Every contact is keyed, and a malformed one refused, before anything
	// is read: bad input is INVALID_ARGUMENT even while the store is down.
	vs, err := s.judge(ctx, req.GetContacts(), p, cons, true)
	if err != nil {
		return nil, toStatus(err)
	}
	results := make([]pb.BatchCheckResult, len(vs))
	out := &pb.BatchCheckResponse{Results: make([]*pb.BatchCheckResult, len(vs))}
	for i, v := range vs {
		results[i].Decision, results[i].Reason = decisionPB(v.d), pb.Reason(v.d.Reason)
		out.Results[i] = &results[i]
	}
	if req.GetRequestIdSalts() {
		caller, _ := CallerFrom(ctx)
		for i, c := range req.GetContacts() {
			key, _ := s.cfg.Keys.Key(c) // judge refused every malformed one
			results[i].RequestIdSalt = requestIDSalt(caller, key)
		}
	}
	return out, nil
}

// FilterAudience answers each request message with the allowed contacts of
// that message, in order. A malformed contact is counted as invalid and
// never allowed; it does not end the stream.
//
// What a stream holds is bounded whether or not its client reads the
// answers: a stream is admitted only within the server's AudienceLimits,
// and it reads a message only while its window has room for it beside the
// messages whose answers are not yet sent (audienceStream.room). A client
// that stops reading therefore stops the reading here, and gRPC's flow
// control (a static window: see the daemon's server options) then stops
// its sender.
//
// Up to filterDepth messages, as many as the window holds, are worked on at
// once: while one waits for the store, the next is being keyed and the one
// before is being sent. Messages
// are received on a goroutine of their own, so that an error (the store
// failing) ends the call at once even while the client is between messages;
// that receiver ends when the stream does, which returning here brings about.
// The judging goroutines are this handler's: it cancels and waits for them
// on every return, so none touches the store after the call.
func (s *checkService) FilterAudience(stream pb.CheckService_FilterAudienceServer) error {
	caller, _ := CallerFrom(stream.Context())
	window, err := s.audience.open(caller)
	if err != nil {
		return toStatus(err)
	}
	defer window.close() // after the judges have stopped
	ctx, cancel := context.WithCancel(stream.Context())
	a := &audience{queue: make(chan *filterWork, filterDepth), window: window}
	defer a.stop(cancel)
	go s.receiveAudience(ctx, stream, a)
	var sum summary
	for w := range a.queue {
		<-w.done
		w.panicked.rethrow()
		if w.err != nil {
			return w.err
		}
		sum.add(&w.counts)
		if err := stream.Send(w.resp); err != nil {
			return err
		}
		window.release(w.cost)
	}
	return stream.Send(&pb.FilterAudienceResponse{Summary: sum.proto()})
}

// panicked is a panic caught on a goroutine a handler started, carried back
// to the handler's own goroutine (rethrow), where the recovery interceptor
// fails the one call with INTERNAL instead of the process dying.
type panicked struct {
	value any
	stack []byte
}

// catch records a panic into *p; defer it first thing in a goroutine.
func catch(p **panicked) {
	if v := recover(); v != nil {
		*p = &panicked{value: v, stack: debug.Stack()}
	}
}

func (p *panicked) rethrow() {
	if p != nil {
		panic(fmt.Sprintf("%v (on a worker goroutine)\n%s", p.value, p.stack))
	}
}

// verdict is one contact's outcome in a batch.
type verdict struct {
	invalid error // the contact is malformed, and d means nothing
	d       consent.Decision
}

// piece is the fewest contacts worth a goroutine of their own: below it, the
// hand-off costs more than the work saves.
const piece = 256

// judge keys and decides every contact; strict makes a malformed contact an
// error (naming it) before anything is read, instead of a verdict. Keying,
// an HMAC per contact, is most of the work when records are cached, so a
// batch is split across the cores, and the records the cache lacks are read
// in one store round trip per part.
func (s *checkService) judge(ctx context.Context, contacts []string, p *consent.Purpose, cons consent.Consistency, strict bool) ([]verdict, error) {
	vs := make([]verdict, len(contacts))
	keys := make([]consent.Key, len(contacts))
	inParts(len(contacts), func(lo, hi int) error {
		for i := lo; i < hi; i++ {
			keys[i], vs[i].invalid = s.cfg.Keys.Key(contacts[i])
		}
		return nil
	})
	if strict {
		for i, v := range vs {
			if v.invalid != nil {
				return nil, &consent.FieldError{Field: contactField(i), Problem: v.invalid.Error()}
			}
		}
	}
	now := s.cfg.Now()
	err := inParts(len(contacts), func(lo, hi int) error {
		valid := make([]int, 0, hi-lo) // the contacts whose keys are read
		for i := lo; i < hi; i++ {
			if vs[i].invalid == nil {
				valid = append(valid, i)
			}
		}
		ks := make([]consent.Key, len(valid))
		for j, i := range valid {
			ks[j] = keys[i]
		}
		recs := make([]*consent.Record, len(ks))
		if err := s.cfg.Records.GetMany(ctx, ks, cons, recs); err != nil {
			return err
		}
		var counts [consent.NumReasons]uint64
		for j, r := range recs {
			d := consent.Decide(r, p, now)
			vs[valid[j]].d = d
			counts[d.Reason]++ // Decide returns only known reasons
		}
		for r, n := range counts {
			if n > 0 {
				s.cfg.Decisions.Decided(p.Name, consent.Reason(r), n)
			}
		}
		return nil
	})
	return vs, err
}

// inParts runs fn over [0, n) split into up to GOMAXPROCS parts of at least
// piece items, in parallel, and waits for them all. A panic in a part is
// raised again on the caller's goroutine.
func inParts(n int, fn func(lo, hi int) error) error {
	parts := min(runtime.GOMAXPROCS(0), max(n/piece, 1))
	if parts == 1 {
		return fn(0, n)
	}
	var wg sync.WaitGroup
	errs := make([]error, parts)
	panics := make([]*panicked, parts)
	for i := range parts {
		lo, hi := i*n/parts, (i+1)*n/parts
		wg.Go(func() {
			defer catch(&panics[i])
			errs[i] = fn(lo, hi)
		})
	}
	wg.Wait()
	for _, p := range panics {
		p.rethrow()
	}
	return errors.Join(errs...)
}

// question parses what every check asks: a known purpose and a freshness.
func (s *checkService) question(purpose string, c *pb.Consistency) (*consent.Purpose, consent.Consistency, error) {
	p, err := s.cfg.Purposes.Resolve("purpose", purpose)
	if err != nil {
		return nil, consent.Consistency{}, err
	}
	cons, err := s.parseConsistency(c)
	return p, cons, err
}

func contactField(i int) string { return "contacts[" + strconv.Itoa(i) + "]" }
