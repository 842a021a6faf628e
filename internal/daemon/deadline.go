package daemon

import (
	"context"
	"fmt"
	"time"

	"github.com/consentd/consentd/consent"
	"github.com/consentd/consentd/server"
)

// maxStoreTimeout bounds --store-read-timeout and --store-write-timeout: a
// call held longer than a minute by a store that does not answer is a hang,
// whatever the configuration meant.
const maxStoreTimeout = time.Minute

// deadlines is the one place where store calls get their deadlines: the
// cache reads through it and the server writes through it. A read (a
// Check's record, an audience's misses) gets --store-read-timeout; a write,
// and a page of history (ListEvents reads up to a thousand events), gets
// --store-write-timeout. VerifyHistory walks the whole store, as long as the
// store is large, and gets no overall deadline beyond its caller's: every
// round trip of the walk is bounded by the Redis client's socket timeout
// (redisTimeouts), and the guard cancels the walk when the store stops
// answering (guard.whileReachable).
//
// The deadline holds only as far as the store heeds its context. Redis
// does (go-redis gives up on the socket). The embedded store checks it as
// a call starts and not after: bbolt cannot be interrupted, so a read or
// write held by a hung disk (an fsync that does not return) holds its
// caller until the disk answers, past the timeout. Answering at the
// deadline while the call finishes in the background would need a
// goroutine per call, a bound on those still running, copies of every
// buffer the store writes into, and an owner that waits for them before
// the database closes; that is not done, and the README's flag rows say
// so. Nor does the guard notice such a hang: its ping is a read of the
// memory-mapped file, which a stuck writer does not block.
//
// A call whose deadline passes while its caller still waits answers
// consent.ErrUnavailable naming the timeout (UNAVAILABLE: the store did not
// answer); one whose caller's own deadline passed first keeps the context's
// error (DEADLINE_EXCEEDED: the caller gave up).
type deadlines struct {
	store       timedBackend
	read, write time.Duration
}

// timedBackend is what deadlines bounds: the reads the cache makes and the
// calls the server makes.
type timedBackend interface {
	server.Store
	Get(ctx context.Context, key consent.Key) (consent.Record, error)
	GetMany(ctx context.Context, keys []consent.Key, out []consent.Record) error
}

var _ server.Store = deadlines{}

func (d deadlines) Get(ctx context.Context, key consent.Key) (consent.Record, error) {
	sctx, cancel := context.WithTimeout(ctx, d.read)
	defer cancel()
	rec, err := d.store.Get(sctx, key)
	return rec, d.missed(ctx, sctx, err, "store-read-timeout", d.read)
}

func (d deadlines) GetMany(ctx context.Context, keys []consent.Key, out []consent.Record) error {
	sctx, cancel := context.WithTimeout(ctx, d.read)
	defer cancel()
	return d.missed(ctx, sctx, d.store.GetMany(sctx, keys, out), "store-read-timeout", d.read)
}

func (d deadlines) Apply(ctx context.Context, w consent.Write) (consent.ConsistencyToken, error) {
	sctx, cancel := context.WithTimeout(ctx, d.write)
	defer cancel()
	tok, err := d.store.Apply(sctx, w)
	return tok, d.missedWrite(ctx, sctx, err)
}

func (d deadlines) ApplyBatch(ctx context.Context, ws []consent.Write) ([]consent.ConsistencyToken, []error, error) {
	sctx, cancel := context.WithTimeout(ctx, d.write)
	defer cancel()
	toks, errs, err := d.store.ApplyBatch(sctx, ws)
	return toks, errs, d.missedWrite(ctx, sctx, err)
}

func (d deadlines) Events(ctx context.Context, key consent.Key, after consent.ConsistencyToken, limit int) ([]consent.Event, bool, error) {
	sctx, cancel := context.WithTimeout(ctx, d.write)
	defer cancel()
	evs, more, err := d.store.Events(sctx, key, after, limit)
	return evs, more, d.missed(ctx, sctx, err, "store-write-timeout", d.write)
}

func (d deadlines) VerifyHistory(ctx context.Context) ([]consent.PartitionHistory, error) {
	return d.store.VerifyHistory(ctx)
}

// missedWrite is missed for a write, which may have been applied although
// its answer came too late.
func (d deadlines) missedWrite(ctx, sctx context.Context, err error) error {
	err = d.missed(ctx, sctx, err, "store-write-timeout", d.write)
	if t, ok := err.(*storeTimeout); ok {
		t.write = true
	}
	return err
}

// missed turns the error of a call made under sctx, derived from the
// caller's ctx with the timeout of flag, into what the caller should see.
func (deadlines) missed(ctx, sctx context.Context, err error, flag string, timeout time.Duration) error {
	switch {
	case err == nil || sctx.Err() == nil:
		return err
	case ctx.Err() != nil:
		// The caller's deadline (or cancellation) came first: whatever
		// the store made of it, that is what happened.
		return fmt.Errorf("store: %w", ctx.Err())
	}
	return &storeTimeout{flag: flag, timeout: timeout}
}

// storeTimeout is a store call that missed its own deadline.
type storeTimeout struct {
	flag    string
	timeout time.Duration
	write   bool
}

func (e *storeTimeout) Error() string {
	msg := fmt.Sprintf("%v: no answer within the store timeout (-%s %v)", consent.ErrUnavailable, e.flag, e.timeout)
	if e.write {
		msg += "; the write may have been applied: retrying with the same request_id applies it at most once"
	}
	return msg
}

// Is makes a missed deadline an unavailable store, never a deadline the
// caller set: the caller may retry, on this sidecar or another.
func (e *storeTimeout) Is(target error) bool { return target == consent.ErrUnavailable }
