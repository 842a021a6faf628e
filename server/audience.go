package server

import (
	"context"
	"fmt"
	"sync"
	"unsafe"

	"github.com/consentd/consentd/consent"
)

// AudienceLimits bound the memory FilterAudience streams hold: what a
// stream has read and not yet answered, whether its client reads the
// answers or not. The zero value of a field is its default.
type AudienceLimits struct {
	// Window is the most one stream holds, in bytes (see messageCost): it
	// reads no further message while the largest it has had would not fit
	// beside the messages still unanswered. A single message larger than
	// the window is read alone.
	Window int64
	// MaxStreams is the most audience streams open at once.
	MaxStreams int
	// MaxBytes is the most all audience streams hold together. A stream
	// opens only while a whole window fits; once open, a stream that finds
	// the budget spent still reads one message at a time, so no open
	// stream ever stalls for another's sake.
	MaxBytes int64
	// CallerShare (0 to 1) is the part of MaxStreams and of MaxBytes one
	// caller may hold, when callers are named (tokens, mTLS), so that one
	// caller cannot take them all.
	CallerShare float64
}

// Defaults of AudienceLimits. The window holds two of the Go client's
// messages (1,000 contacts each: one judged while the one before is sent)
// and keeps issue 15's bound: 200 streams whose client reads nothing add
// at most 256 MiB to consentd's RSS, gRPC's buffers (with the daemon's
// static windows) and the collector's headroom (the heap grows to twice
// what is live before a collection) included: TestSlowAudienceReaders
// measures 0.8 MiB of RSS a stream (a 512 KiB window took 1.0 to 1.4 MiB,
// over the bound). MaxBytes lets every stream of MaxStreams fill its
// window.
const (
	DefaultAudienceWindow      = 256 << 10
	DefaultAudienceMaxStreams  = 256
	DefaultAudienceMaxBytes    = DefaultAudienceMaxStreams * DefaultAudienceWindow
	DefaultAudienceCallerShare = 0.5
)

func (l AudienceLimits) withDefaults() AudienceLimits {
	if l.Window <= 0 {
		l.Window = DefaultAudienceWindow
	}
	if l.MaxStreams <= 0 {
		l.MaxStreams = DefaultAudienceMaxStreams
	}
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultAudienceMaxBytes
	}
	if l.CallerShare <= 0 || l.CallerShare > 1 {
		l.CallerShare = DefaultAudienceCallerShare
	}
	return l
}

// perContact is what a contact of a message in flight costs beyond its
// own bytes: its string header in the request and in the answer, its
// verdict and its key.
const perContact = int64(2*unsafe.Sizeof("") + unsafe.Sizeof(verdict{}) + unsafe.Sizeof(consent.Key{}))

// perMessage is a message's fixed cost: the request and answer structs,
// its work item and the slices' own headers, rounded up.
const perMessage = 512

// messageCost is the memory a request message holds from the moment it is
// read until its answer is sent: what a stream's window counts.
func messageCost(contacts []string) int64 {
	n := perMessage + int64(len(contacts))*perContact
	for _, c := range contacts {
		n += int64(len(c))
	}
	return n
}

// LimitError is a request refused because a server-wide limit is reached:
// RESOURCE_EXHAUSTED, with a message naming the limit and the flag that
// raises it.
type LimitError struct{ msg string }

func (e *LimitError) Error() string { return e.msg }

// audienceBudget is the server's account of audience streams and the bytes
// they hold, in all and per named caller.
type audienceBudget struct {
	lim AudienceLimits
	// The most one named caller may hold.
	callerStreams int
	callerBytes   int64

	mu      sync.Mutex
	streams int
	bytes   int64
	peak    int64               // the most bytes held since Server.AudienceHeld last asked
	callers map[string]*holding // named callers with a stream open
	// freed is closed, and replaced, whenever bytes are given back: streams
	// waiting for room look again.
	freed chan struct{}
}

type holding struct {
	streams int
	bytes   int64
}

func newAudienceBudget(l AudienceLimits) *audienceBudget {
	l = l.withDefaults()
	return &audienceBudget{
		lim:           l,
		callerStreams: max(1, int(float64(l.MaxStreams)*l.CallerShare)),
		callerBytes:   max(l.Window, int64(float64(l.MaxBytes)*l.CallerShare)),
		callers:       map[string]*holding{},
		freed:         make(chan struct{}),
	}
}

// audienceStream is one stream's part of the budget. Its methods are safe
// for use by the stream's receiver and sender at once.
type audienceStream struct {
	b      *audienceBudget
	name   string   // the caller's, "" when not named
	caller *holding // nil without a named caller
	// Under b.mu:
	held    int64 // bytes read and not yet answered
	largest int64 // the largest message read so far
	closed  bool
}

// open admits a new stream of caller ("" when callers are not named), or
// refuses it with a *LimitError when the server, or the caller's share of
// it, has no room for the stream and its window.
func (b *audienceBudget) open(caller string) (*audienceStream, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	w := b.lim.Window
	switch {
	case b.streams >= b.lim.MaxStreams:
		return nil, &LimitError{fmt.Sprintf("FilterAudience: %d audience streams are open, the most allowed (--audience-max-streams=%d); retry when one ends",
			b.streams, b.lim.MaxStreams)}
	case b.bytes+w > b.lim.MaxBytes:
		return nil, &LimitError{fmt.Sprintf("FilterAudience: audience streams hold %s, no room for another stream's window of %s within --audience-max-bytes=%d; retry when one ends",
			size(b.bytes), size(w), b.lim.MaxBytes)}
	}
	h := b.callers[caller]
	if caller != "" {
		if h == nil {
			h = &holding{}
		}
		switch {
		case h.streams >= b.callerStreams:
			return nil, &LimitError{fmt.Sprintf("FilterAudience: caller %q has %d audience streams open, its share (--audience-caller-share=%g) of --audience-max-streams=%d; retry when one ends",
				caller, h.streams, b.lim.CallerShare, b.lim.MaxStreams)}
		case h.bytes+w > b.callerBytes:
			return nil, &LimitError{fmt.Sprintf("FilterAudience: caller %q's audience streams hold %s, no room for another window of %s within its share (--audience-caller-share=%g) of --audience-max-bytes=%d; retry when one ends",
				caller, size(h.bytes), size(w), b.lim.CallerShare, b.lim.MaxBytes)}
		}
		b.callers[caller] = h
		h.streams++
	}
	b.streams++
	return &audienceStream{b: b, name: caller, caller: h}, nil
}

// size is n bytes for a person to read.
func size(n int64) string {
	if n < 1<<20 {
		return fmt.Sprintf("%d bytes", n)
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

// fits reports whether s may read another message: always when it holds
// nothing (so a stream never stalls), else when a message as large as its
// largest fits in its window, in the server's budget and in its caller's
// share. Call with b.mu held.
func (s *audienceStream) fits() bool {
	if s.held == 0 || s.closed {
		return true
	}
	n, b := s.largest, s.b
	return s.held+n <= b.lim.Window && b.bytes+n <= b.lim.MaxBytes &&
		(s.caller == nil || s.caller.bytes+n <= b.callerBytes)
}

// room waits until s may read another message, or ctx is done.
func (s *audienceStream) room(ctx context.Context) error {
	for {
		s.b.mu.Lock()
		ok, freed := s.fits(), s.b.freed
		s.b.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-freed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// hold counts n bytes of a message just read, until release gives them
// back.
func (s *audienceStream) hold(n int64) {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	s.largest = max(s.largest, n)
	if s.closed {
		return // the stream is over: its receiver read one last message
	}
	s.add(n)
}

// release gives back n bytes held since hold(n): their answer was sent.
func (s *audienceStream) release(n int64) {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	if s.closed {
		return
	}
	s.add(-n)
	s.b.wake()
}

// close ends s: whatever it holds is given back and its place is free.
func (s *audienceStream) close() {
	b := s.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if s.closed {
		return
	}
	s.add(-s.held)
	s.closed = true
	b.streams--
	if h := s.caller; h != nil {
		if h.streams--; h.streams == 0 {
			delete(b.callers, s.name)
		}
	}
	b.wake()
}

// add moves n bytes into (or, negative, out of) s's holding. Call with
// b.mu held.
func (s *audienceStream) add(n int64) {
	s.held += n
	s.b.bytes += n
	s.b.peak = max(s.b.peak, s.b.bytes)
	if s.caller != nil {
		s.caller.bytes += n
	}
}

// wake tells the streams waiting for room to look again. Call with b.mu
// held.
func (b *audienceBudget) wake() {
	close(b.freed)
	b.freed = make(chan struct{})
}

// AudienceHeld reports the bytes FilterAudience streams hold now, and the
// most they held since the previous call: what the daemon watches to give
// memory back after a burst of streams.
func (s *Server) AudienceHeld() (now, peak int64) {
	b := s.audience
	b.mu.Lock()
	defer b.mu.Unlock()
	now, peak = b.bytes, b.peak
	b.peak = b.bytes
	return now, peak
}
