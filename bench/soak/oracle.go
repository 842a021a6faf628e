package soak

import (
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/consentd/consentd/consent"
)

// Kind is what a write does.
type Kind uint8

const (
	Grant    Kind = iota + 1 // grant one purpose
	Withdraw                 // withdraw one purpose
	Erase                    // erase the contact: every purpose
)

func (k Kind) String() string {
	switch k {
	case Grant:
		return "grant"
	case Withdraw:
		return "withdraw"
	case Erase:
		return "erase"
	}
	return "?"
}

// Write is one write attempt. Writes of one contact never overlap: the load
// starts the next only after the previous one ended.
type Write struct {
	Contact int
	Purpose int // for Grant and Withdraw; ignored for Erase
	Kind    Kind
	Sidecar int
	Start   time.Time // just before the request was sent; a grant's and a withdrawal's captured_at
	End     time.Time // when the answer or the error came; zero while in flight
	Acked   bool      // consentd answered OK (with a token): End is the ack time
	Token   consent.ConsistencyToken
}

// touches reports whether w changes purpose p.
func (w *Write) touches(p int) bool { return w.Kind == Erase || w.Purpose == p }

// end is End, or the far future while the write is in flight.
func (w *Write) end() time.Time {
	if w.End.IsZero() {
		return forever()
	}
	return w.End
}

// forever is later than anything a run records.
func forever() time.Time { return time.Unix(1<<40, 0) }

// Answer is one decision a sidecar gave: a Check's, or a contact a
// FilterAudience stream let through (always an ALLOW).
type Answer struct {
	Contact int
	Purpose int
	Sidecar int
	Start   time.Time // just before the request (the stream) was sent
	End     time.Time // when the answer (the stream's end) came
	Allowed bool
	Stream  bool // from FilterAudience
	// Token is the index (in Log.Writes) of the write whose token the Check
	// passed as at_least_as_fresh, or -1.
	Token int
}

// Read is one fully consistent read of a contact's whole state (GetContact),
// made by the audits after each recovery and at the end.
type Read struct {
	Contact int
	Sidecar int
	Start   time.Time
	End     time.Time
	Allowed []bool // by purpose
}

// Wipe is a FLUSHALL the schedule injected and the operator's re-init after
// it.
type Wipe struct {
	Sent   time.Time // FLUSHALL was sent
	Done   time.Time // its reply came: the store was empty by then
	Reinit time.Time // the operator launched consentd --redis-init; zero if never
	// Noticed is, per sidecar, its first poll after Done that was not
	// SERVING; zero if there was none before the operator acted.
	Noticed []time.Time
}

// Window is a span of time.
type Window struct {
	From, To time.Time
}

func (w Window) contains(t time.Time) bool { return t.After(w.From) && t.Before(w.To) }

// Log is what a soak recorded: every write attempt, answer and read, the
// wipes, the spans in which the store's state was unknown for reasons other
// than a wipe (a drift that evicted keys), and the spans of every fault
// (from injection to recovery).
type Log struct {
	Writes  []Write
	Answers []Answer
	Reads   []Read
	Wipes   []Wipe
	Unknown []Window
	Faults  []Window
}

// Recorder collects a Log from the load's goroutines. It holds every event
// of the run: its size is bounded by the load's rates and duration.
type Recorder struct {
	mu  sync.Mutex
	log Log
}

// BeginWrite records a write attempt about to be sent and returns its index.
func (r *Recorder) BeginWrite(w Write) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.log.Writes = append(r.log.Writes, w)
	return len(r.log.Writes) - 1
}

// EndWrite records how write i ended, with its token if it was acked.
func (r *Recorder) EndWrite(i int, end time.Time, acked bool, tok consent.ConsistencyToken) {
	r.mu.Lock()
	defer r.mu.Unlock()
	w := &r.log.Writes[i]
	w.End, w.Acked, w.Token = end, acked, tok
}

// token returns the token write i was acked with.
func (r *Recorder) token(i int) consent.ConsistencyToken {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.log.Writes[i].Token
}

// Answer records a decision.
func (r *Recorder) Answer(a Answer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.log.Answers = append(r.log.Answers, a)
}

// Read records a fully consistent read.
func (r *Recorder) Read(rd Read) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.log.Reads = append(r.log.Reads, rd)
}

// Wipe records a FLUSHALL and returns its index, for Reinit.
func (r *Recorder) Wipe(sent, done time.Time) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.log.Wipes = append(r.log.Wipes, Wipe{Sent: sent, Done: done})
	return len(r.log.Wipes) - 1
}

// Noticed records when sidecar side was first seen not SERVING after wipe i.
func (r *Recorder) Noticed(i, side int, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	wp := &r.log.Wipes[i]
	for len(wp.Noticed) <= side {
		wp.Noticed = append(wp.Noticed, time.Time{})
	}
	wp.Noticed[side] = at
}

// Reinit records when the operator launched the re-init after wipe i.
func (r *Recorder) Reinit(i int, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.log.Wipes[i].Reinit = at
}

// Unknown records a span in which the store's state was unknown.
func (r *Recorder) Unknown(w Window) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.log.Unknown = append(r.log.Unknown, w)
}

// Fault records the span of a fault, from injection to recovery.
func (r *Recorder) Fault(w Window) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.log.Faults = append(r.log.Faults, w)
}

// Snapshot returns a copy of the log so far.
func (r *Recorder) Snapshot() Log {
	r.mu.Lock()
	defer r.mu.Unlock()
	wipes := slices.Clone(r.log.Wipes)
	for i := range wipes {
		wipes[i].Noticed = slices.Clone(wipes[i].Noticed)
	}
	return Log{
		Writes:  slices.Clone(r.log.Writes),
		Answers: slices.Clone(r.log.Answers),
		Reads:   slices.Clone(r.log.Reads),
		Wipes:   wipes,
		Unknown: slices.Clone(r.log.Unknown),
		Faults:  slices.Clone(r.log.Faults),
	}
}

// Rule names a must-be-zero rule of the oracle (see the package doc).
type Rule string

const (
	LostWrite        Rule = "lost-write"         // a read does not show an acknowledged write
	WipedAck         Rule = "ack-into-wiped"     // a write acknowledged between a FLUSHALL and the re-init
	AllowWithToken   Rule = "allow-with-token"   // ALLOW despite the token of a later withdrawal/erasure
	AllowBeyondLease Rule = "allow-beyond-lease" // ALLOW after a withdrawal/erasure, past the lease
	AllowUnknown     Rule = "allow-unknown"      // ALLOW while the store's state was unknown
)

// Rules lists the must-be-zero rules in report order.
func Rules() []Rule {
	return []Rule{LostWrite, WipedAck, AllowWithToken, AllowBeyondLease, AllowUnknown}
}

// Violation is one breach of a rule, with what it needs to be looked into.
// Times are offsets from the start of the run.
type Violation struct {
	Rule    Rule          `json:"rule"`
	Contact int           `json:"contact"`
	Purpose int           `json:"purpose"`
	Sidecar int           `json:"sidecar"`
	At      time.Duration `json:"at"`     // the request's start (a write's ack)
	Detail  string        `json:"detail"` // the write or wipe it contradicts
}

// Findings is the oracle's verdict on a Log.
type Findings struct {
	Counts map[Rule]int `json:"counts"`
	// AllowWithinLease counts ALLOWs after an acknowledged withdrawal or
	// erasure, without its token, within the lease: what guarantee 2
	// permits.
	AllowWithinLease int `json:"allow_within_lease"`
	// AllowBeforeNotice counts ALLOWs after a FLUSHALL, within the lease,
	// from a sidecar not yet seen NOT_SERVING: a cache cannot know of a
	// wipe before its guard does, as it cannot know of a withdrawal before
	// its feed does.
	AllowBeforeNotice int `json:"allow_before_notice"`
	// Samples are the first violations of each rule.
	Samples []Violation `json:"samples"`
}

// Failed reports whether any must-be-zero rule was broken.
func (f Findings) Failed() bool {
	for _, n := range f.Counts {
		if n > 0 {
			return true
		}
	}
	return false
}

// samplesPerRule bounds Findings.Samples.
const samplesPerRule = 10

// Evaluate applies the rules of the package doc to l. lease is consentd's
// --lease; t0, the start of the run, is what Violation.At is counted from.
func Evaluate(l Log, lease time.Duration, t0 time.Time) Findings {
	o := newOracle(l)
	f := Findings{Counts: map[Rule]int{}}
	for _, r := range Rules() {
		f.Counts[r] = 0
	}
	add := func(v Violation) {
		f.Counts[v.Rule]++
		n := 0
		for _, s := range f.Samples {
			if s.Rule == v.Rule {
				n++
			}
		}
		if n < samplesPerRule {
			f.Samples = append(f.Samples, v)
		}
	}
	for i := range l.Writes {
		w := &l.Writes[i]
		if !w.Acked {
			continue
		}
		for _, wp := range l.Wipes {
			if w.Start.After(wp.Done) && (wp.Reinit.IsZero() || w.End.Before(wp.Reinit)) {
				add(Violation{Rule: WipedAck, Contact: w.Contact, Purpose: w.Purpose, Sidecar: w.Sidecar, At: w.End.Sub(t0),
					Detail: w.Kind.String() + " acknowledged after the FLUSHALL at " + at(wp.Done, t0) + " and before the re-init"})
			}
		}
	}
	for _, a := range l.Answers {
		if !a.Allowed {
			continue
		}
		v := Violation{Contact: a.Contact, Purpose: a.Purpose, Sidecar: a.Sidecar, At: a.Start.Sub(t0)}
		if w, wp, ok := o.unknown(a.Start); ok {
			switch {
			case o.grantedSince(a.Contact, a.Purpose, w.To, a.End):
			case wp != nil && !a.Start.After(wp.Done.Add(lease)) && !wp.noticedBy(a.Sidecar, a.Start):
				f.AllowBeforeNotice++
			default:
				v.Rule, v.Detail = AllowUnknown, "the store's state was unknown from "+at(w.From, t0)
				if wp != nil && wp.noticedBy(a.Sidecar, a.Start) {
					v.Detail += "; this sidecar was NOT_SERVING at " + at(wp.Noticed[a.Sidecar], t0)
				}
				add(v)
			}
			continue
		}
		e := o.explain(a.Contact, a.Purpose, a.Start, a.End)
		if e.allow {
			continue
		}
		switch {
		case e.write != nil && a.Token >= 0 && o.covers(a.Token, e.write):
			v.Rule = AllowWithToken
		case a.Start.After(e.settled.Add(lease)):
			v.Rule = AllowBeyondLease
		default:
			f.AllowWithinLease++
			continue
		}
		v.Detail = e.describe(t0)
		add(v)
	}
	for _, rd := range l.Reads {
		for p, allowed := range rd.Allowed {
			e := o.explain(rd.Contact, p, rd.Start, rd.End)
			if (allowed && e.allow) || (!allowed && e.deny) {
				continue
			}
			add(Violation{Rule: LostWrite, Contact: rd.Contact, Purpose: p, Sidecar: rd.Sidecar, At: rd.Start.Sub(t0),
				Detail: "read " + decision(allowed) + " after " + e.describe(t0)})
		}
	}
	return f
}

func decision(allowed bool) string {
	if allowed {
		return "ALLOW"
	}
	return "DENY"
}

func at(t, t0 time.Time) string { return t.Sub(t0).Round(time.Millisecond).String() }

// oracle indexes a Log for the rules.
type oracle struct {
	l       Log
	byCont  map[int][]int // write indices per contact, in order of Start
	faultTo []Window      // l.Faults sorted by From
}

func newOracle(l Log) *oracle {
	o := &oracle{l: l, byCont: map[int][]int{}}
	for i, w := range l.Writes {
		o.byCont[w.Contact] = append(o.byCont[w.Contact], i)
	}
	for _, idx := range o.byCont {
		sort.SliceStable(idx, func(a, b int) bool { return l.Writes[idx[a]].Start.Before(l.Writes[idx[b]].Start) })
	}
	o.faultTo = slices.Clone(l.Faults)
	sort.Slice(o.faultTo, func(a, b int) bool { return o.faultTo[a].From.Before(o.faultTo[b].From) })
	return o
}

// unknown returns the span of unknown state that t falls in: from a wipe's
// reply to its re-init (or the end of the run), with the wipe, or a
// recorded one. To is when writes may legitimately be made again.
func (o *oracle) unknown(t time.Time) (Window, *Wipe, bool) {
	for i := range o.l.Wipes {
		wp := &o.l.Wipes[i]
		w := Window{From: wp.Done, To: wp.Reinit}
		if w.To.IsZero() {
			w.To = forever()
		}
		if w.contains(t) {
			return w, wp, true
		}
	}
	for _, w := range o.l.Unknown {
		if w.contains(t) {
			return w, nil, true
		}
	}
	return Window{}, nil, false
}

// noticedBy reports whether sidecar side had been seen not SERVING since
// the wipe by t.
func (wp *Wipe) noticedBy(side int, t time.Time) bool {
	return side < len(wp.Noticed) && !wp.Noticed[side].IsZero() && t.After(wp.Noticed[side])
}

// grantedSince reports whether a grant of (c, p) was attempted at or after
// from and before until.
func (o *oracle) grantedSince(c, p int, from, until time.Time) bool {
	for _, i := range o.byCont[c] {
		w := &o.l.Writes[i]
		if w.Kind == Grant && w.Purpose == p && !w.Start.Before(from) && w.Start.Before(until) {
			return true
		}
	}
	return false
}

// covers reports whether the token of write tok is at least as fresh as
// write w: a later (or the same) write of the same contact.
func (o *oracle) covers(tok int, w *Write) bool {
	t := &o.l.Writes[tok]
	return t.Contact == w.Contact && !t.Start.Before(w.Start)
}

// explanation is which states of (contact, purpose) an observation made
// over [start, end] may show.
type explanation struct {
	allow, deny bool
	// The state settled before start: the last acknowledged write (write)
	// or wipe (wipe) that touched the pair, at settled; neither when none
	// did (settled is then the zero time).
	write   *Write
	wipe    *Wipe
	settled time.Time
}

func (e explanation) describe(t0 time.Time) string {
	switch {
	case e.write != nil:
		return e.write.Kind.String() + " acknowledged at " + at(e.write.End, t0)
	case e.wipe != nil:
		return "the FLUSHALL at " + at(e.wipe.Done, t0)
	}
	return "no write"
}

// explain returns what an observation of (c, p) made over [start, end] may
// show. The state settled before start is that of the last acknowledged
// write of the pair (ack before start), or of a later wipe (reply before
// start): DENY for a withdrawal, an erasure, a wipe or nothing at all, ALLOW
// for a grant. Besides, the observation may show the outcome of
//   - any write of the pair begun after that write and before end (grants
//     and withdrawals carry their start as captured_at, so a later-dated one
//     wins whenever it lands; one that failed may still have landed);
//   - after a wipe: any write of the pair still in flight when the FLUSHALL
//     was sent, or begun since (it may have landed before or after it);
//   - a DENY, if the settling write was in flight during a wipe (it may have
//     been destroyed);
//   - a DENY, if an erasure of the contact that failed (never acknowledged)
//     began before end and could still land after the settling write began:
//     an erasure is not ordered by date, it clears the record whenever it
//     lands, and one held up during a fault lands by that fault's recovery.
func (o *oracle) explain(c, p int, start, end time.Time) explanation {
	var e explanation
	idx := o.byCont[c]
	for _, i := range idx {
		w := &o.l.Writes[i]
		if w.Acked && w.touches(p) && w.End.Before(start) && (e.write == nil || w.End.After(e.write.End)) {
			e.write, e.settled = w, w.End
		}
	}
	for i := range o.l.Wipes {
		wp := &o.l.Wipes[i]
		if wp.Done.Before(start) && wp.Done.After(e.settled) {
			e.write, e.wipe, e.settled = nil, wp, wp.Done
		}
	}
	var since time.Time // writes dated after this may have won
	switch {
	case e.write != nil:
		e.allow = e.write.Kind == Grant
		e.deny = !e.allow
		since = e.write.Start
		for _, wp := range o.l.Wipes {
			if wp.Sent.Before(e.write.End) && wp.Done.After(e.write.Start) {
				e.deny = true
			}
		}
	default:
		e.deny = true
	}
	for _, i := range idx {
		w := &o.l.Writes[i]
		if !w.touches(p) || !w.Start.Before(end) {
			continue
		}
		var maybe bool
		switch {
		case e.write != nil:
			maybe = w.Start.After(since)
		case e.wipe != nil:
			maybe = w.end().After(e.wipe.Sent)
		default:
			maybe = true
		}
		if maybe {
			e.allow = e.allow || w.Kind == Grant
			e.deny = e.deny || w.Kind != Grant
		}
		if w.Kind == Erase && !w.Acked && (e.write == nil || o.settle(w.end()).After(since)) {
			e.deny = true
		}
	}
	return e
}

// settle returns when a write that ended (failed) at t had certainly landed
// or been dropped: the recovery of the fault in progress at t, else t.
func (o *oracle) settle(t time.Time) time.Time {
	for _, f := range o.faultTo {
		if !t.Before(f.From) && !t.After(f.To) {
			return f.To
		}
	}
	return t
}
