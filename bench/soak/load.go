package soak

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/consentd/consentd/bench"
	"github.com/consentd/consentd/client"
	"github.com/consentd/consentd/consent"
	pb "github.com/consentd/consentd/proto/consent/v1"
)

// Call is one Check as the sender saw it, failed or not: what the per-fault
// latency and error figures are made of.
type Call struct {
	Sidecar int
	Start   time.Time
	Took    time.Duration
	Failed  bool
}

// load is the soak's traffic: who to ask about, the latest token of each
// contact, and the contacts just written.
type load struct {
	cfg      Config
	names    []string       // contact i's address
	index    map[string]int // and back
	purposes []string
	clients  []*client.Client
	rec      *Recorder

	busy []sync.Mutex // one per contact: its writes never overlap

	mu     sync.Mutex
	tokens []int // per contact: the index of its latest acknowledged write, or -1
	recent [64]pair
	nrec   int
	calls  []Call
	skips  int // writes not sent: every contact tried was being written
}

type pair struct{ contact, purpose int }

func newLoad(cfg Config, purposes []string, clients []*client.Client, rec *Recorder) *load {
	l := &load{cfg: cfg, purposes: purposes, clients: clients, rec: rec,
		names: make([]string, cfg.Contacts), index: make(map[string]int, cfg.Contacts),
		busy: make([]sync.Mutex, cfg.Contacts), tokens: make([]int, cfg.Contacts)}
	for i := range l.names {
		l.names[i] = fmt.Sprintf("soak%d@soak.example", i)
		l.index[l.names[i]] = i
		l.tokens[i] = -1
	}
	return l
}

// rng is request i's own generator, so a seed repeats the same choices.
func (l *load) rng(stream, i int) *rand.Rand {
	return rand.New(rand.NewPCG(l.cfg.Seed, uint64(stream)<<40|uint64(i)))
}

// run offers the whole load until the duration passes or ctx is done, and
// returns the streams' results (Checks and writes are in the Recorder).
func (l *load) run(ctx context.Context) (streams *bench.Result, err error) {
	var wg sync.WaitGroup
	errs := make([]error, 3)
	run := func(slot int, rate float64, op bench.Op, out **bench.Result) {
		wg.Go(func() {
			// Enough workers that a stalled store queues no request behind
			// another (a queued one would start late, and its latency would
			// hide in the wait): rate × timeout, within reason.
			workers := min(max(int(rate*l.cfg.RequestTimeout.Seconds())+1, 4), 4096)
			*out, errs[slot] = bench.Run(ctx, bench.Load{Rate: rate, Duration: l.cfg.Duration, Workers: workers, Timeout: l.cfg.RequestTimeout}, op)
		})
	}
	var checks, writes *bench.Result
	run(0, l.cfg.Rate, l.check, &checks)
	run(1, l.cfg.WriteRate, l.write, &writes)
	run(2, l.cfg.StreamRate, l.stream, &streams)
	wg.Wait()
	for _, e := range errs {
		if e != nil && ctx.Err() == nil {
			err = e
		}
	}
	return streams, err
}

// pick returns a contact and purpose to ask about: half the time one just
// written, else any.
func (l *load) pick(r *rand.Rand) pair {
	l.mu.Lock()
	n := min(l.nrec, len(l.recent))
	if n > 0 && r.IntN(2) == 0 {
		p := l.recent[r.IntN(n)]
		l.mu.Unlock()
		return p
	}
	l.mu.Unlock()
	return pair{r.IntN(len(l.names)), r.IntN(len(l.purposes))}
}

func (l *load) check(ctx context.Context, i int) error {
	r := l.rng(0, i)
	side := i % len(l.clients)
	p := l.pick(r)
	tok := -1
	var opts []client.CheckOption
	if r.IntN(2) == 0 {
		l.mu.Lock()
		tok = l.tokens[p.contact]
		l.mu.Unlock()
		if tok >= 0 {
			opts = append(opts, client.AtLeastAsFresh(l.rec.token(tok)))
		}
	}
	start := time.Now()
	d, err := l.clients[side].Check(ctx, l.names[p.contact], l.purposes[p.purpose], opts...)
	end := time.Now()
	l.mu.Lock()
	l.calls = append(l.calls, Call{Sidecar: side, Start: start, Took: end.Sub(start), Failed: err != nil})
	l.mu.Unlock()
	if err != nil {
		return err
	}
	l.rec.Answer(Answer{Contact: p.contact, Purpose: p.purpose, Sidecar: side, Start: start, End: end, Allowed: d.Allowed, Token: tok})
	return nil
}

// write grants (50%), withdraws (40%) one purpose of, or erases (10%) a
// contact no other write is in flight for.
func (l *load) write(ctx context.Context, i int) error {
	r := l.rng(1, i)
	c := -1
	for range 8 {
		if try := r.IntN(len(l.names)); l.busy[try].TryLock() {
			c = try
			break
		}
	}
	if c < 0 {
		l.mu.Lock()
		l.skips++
		l.mu.Unlock()
		return nil
	}
	defer l.busy[c].Unlock()
	w := Write{Contact: c, Purpose: r.IntN(len(l.purposes)), Sidecar: r.IntN(len(l.clients))}
	switch x := r.IntN(10); {
	case x < 5:
		w.Kind = Grant
	case x < 9:
		w.Kind = Withdraw
	default:
		w.Kind = Erase
	}
	cl, name, purpose := l.clients[w.Sidecar], l.names[c], l.purposes[w.Purpose]
	w.Start = time.Now()
	idx := l.rec.BeginWrite(w)
	// captured_at is the start: a write's date orders it against the
	// others of its contact, whenever and however often it lands.
	at := timestamppb.New(w.Start)
	var (
		tok consent.ConsistencyToken
		err error
	)
	switch w.Kind {
	case Grant:
		tok, err = cl.Grant(ctx, &pb.GrantRequest{Contact: name, Purposes: []string{purpose}, Method: pb.Method_METHOD_CHECKBOX,
			CapturedAt: at, EvidenceRef: "soak", Actor: "consentbench-soak"})
	case Withdraw:
		tok, err = cl.Withdraw(ctx, &pb.WithdrawRequest{Contact: name, Purposes: []string{purpose}, CapturedAt: at, Actor: "consentbench-soak"})
	case Erase:
		tok, err = cl.Erase(ctx, &pb.EraseRequest{Contact: name, Actor: "consentbench-soak"})
	}
	end := time.Now()
	l.rec.EndWrite(idx, end, err == nil, tok)
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.tokens[c] = idx
	l.recent[l.nrec%len(l.recent)] = pair{c, w.Purpose}
	l.nrec++
	l.mu.Unlock()
	return nil
}

// streamSize is how many contacts one FilterAudience stream carries: half
// just written, half any.
const streamSize = 200

func (l *load) stream(ctx context.Context, i int) error {
	r := l.rng(2, i)
	side := i % len(l.clients)
	purpose := r.IntN(len(l.purposes))
	audience := make([]string, 0, streamSize)
	for range streamSize {
		p := l.pick(r)
		audience = append(audience, l.names[p.contact])
	}
	var allowed []int
	start := time.Now()
	_, err := l.clients[side].Filter(ctx, l.purposes[purpose], slices.Values(audience), func(contact string) error {
		allowed = append(allowed, l.index[contact])
		return nil
	})
	end := time.Now()
	for _, c := range allowed {
		l.rec.Answer(Answer{Contact: c, Purpose: purpose, Sidecar: side, Start: start, End: end, Allowed: true, Stream: true, Token: -1})
	}
	return err
}

// callsAndSkips returns what the load recorded beside the oracle's log.
func (l *load) callsAndSkips() ([]Call, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.calls, l.skips
}
