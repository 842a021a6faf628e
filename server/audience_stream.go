package server

import (
	"context"
	"errors"
	"io"
	"sync"

	"github.com/consentd/consentd/consent"
	pb "github.com/consentd/consentd/proto/consent/v1"
)

// The machinery of a FilterAudience call (the handler is in check.go): its
// messages judged in the background, in order, within the stream's window.

// filterDepth is how many request messages of one stream are in progress at
// once.
const filterDepth = 4

// audience is one FilterAudience call's shared state: the queue of messages
// in order, and the judging goroutines, which may start only while the call
// is open.
type audience struct {
	queue  chan *filterWork
	window *audienceStream

	mu     sync.Mutex
	closed bool
	judges sync.WaitGroup
}

// judge runs fn on a goroutine owned by the call, unless the call is over.
func (a *audience) judge(fn func()) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return false
	}
	a.judges.Go(fn)
	return true
}

// stop ends the call's work: no judge starts after it, and every running
// one has returned when it does.
func (a *audience) stop(cancel context.CancelFunc) {
	cancel()
	a.mu.Lock()
	a.closed = true
	a.mu.Unlock()
	a.judges.Wait()
}

// filterWork is one request message of an audience, judged in the
// background; done is closed when resp, err or panicked is set. Once
// judged, it keeps only its answer: the request and the verdicts are let
// go while the answer waits for its turn, or for the client to read.
type filterWork struct {
	cost     int64 // held in the stream's window until the answer is sent
	resp     *pb.FilterAudienceResponse
	counts   summary
	err      error // a status for the client: ends the stream
	panicked *panicked
	done     chan struct{}
}

// receiveAudience reads the stream's messages and starts judging each,
// queueing them in order, until ctx, the call's, is done. A bad message is
// queued as an error, after the messages before it, and ends the reading.
func (s *checkService) receiveAudience(ctx context.Context, stream pb.CheckService_FilterAudienceServer, a *audience) {
	defer close(a.queue)
	var (
		p    *consent.Purpose
		cons consent.Consistency
	)
	for {
		if a.window.room(ctx) != nil {
			return // the call is over
		}
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
		if !bad {
			contacts := req.GetContacts()
			w.cost = messageCost(contacts)
			a.window.hold(w.cost)
			started := a.judge(func() {
				defer close(w.done)
				defer catch(&w.panicked)
				vs, err := s.judge(ctx, contacts, p, cons, false)
				if err != nil {
					w.err = toStatus(err)
					return
				}
				w.resp, w.counts = answer(contacts, vs)
			})
			if !started {
				return // the call is over
			}
		} else {
			close(w.done)
		}
		select {
		case a.queue <- w:
		case <-ctx.Done():
			return
		}
		if bad {
			return
		}
	}
}

// answer is the answer to one audience message: its allowed contacts, in
// order, and its counts.
func answer(contacts []string, vs []verdict) (*pb.FilterAudienceResponse, summary) {
	sum := summary{total: uint64(len(contacts))}
	for _, v := range vs {
		if v.invalid != nil {
			sum.invalid++
		} else {
			sum.reasons[v.d.Reason]++
		}
	}
	// Sized exactly: the answer may wait long for a slow client.
	resp := &pb.FilterAudienceResponse{Allowed: make([]string, 0, sum.reasons[consent.ReasonGranted])}
	for i, v := range vs {
		if v.invalid == nil && v.d.Allowed {
			resp.Allowed = append(resp.Allowed, contacts[i])
		}
	}
	return resp, sum
}

type summary struct {
	total, invalid uint64
	reasons        [consent.NumReasons]uint64
}

func (s *summary) add(o *summary) {
	s.total += o.total
	s.invalid += o.invalid
	for i, n := range o.reasons {
		s.reasons[i] += n
	}
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
