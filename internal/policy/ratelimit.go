package policy

import (
	"context"
	"math"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/consentd/consentd/internal/caller"
)

// Rate limits. A caller with a "rate" in the policy file has a token bucket
// of its own; every governed call takes from it before any handler runs:
//
//   - a unary call costs one token, BatchCheck one a contact and
//     WriteBatch one a write; a batch larger than the burst is refused (it
//     could never pass). Without enough tokens the call is refused with
//     RESOURCE_EXHAUSTED naming the limit and when to retry;
//   - a FilterAudience stream costs one token to open, refused the same
//     way, then one a contact, which it waits for instead: an audience is
//     slowed to the caller's rate (gRPC flow control pushes back on the
//     sender), never cut off halfway. A wait the stream's deadline cannot
//     cover ends it with RESOURCE_EXHAUSTED.
//
// Buckets live as long as the caller's limit: a reload keeps the bucket of
// a caller whose rate is unchanged (so a reload never refills anyone's
// bucket), gives a caller whose rate changed a full bucket of the new size,
// and drops the bucket of a caller the new policy no longer limits or names.

// enforced is a policy with the token buckets of its limited callers.
type enforced struct {
	policy  *Policy
	buckets map[string]*bucket // by caller
}

type bucket struct {
	rate Rate
	lim  *rate.Limiter
}

// enforce returns p with token buckets, taking over prev's bucket of each
// caller whose rate is the same in p; prev may be nil.
func enforce(p *Policy, prev *enforced) *enforced {
	e := &enforced{policy: p, buckets: map[string]*bucket{}}
	for name, ent := range p.callers {
		if ent.rate == nil {
			continue
		}
		if old, ok := prev.bucket(name); ok && old.rate == *ent.rate {
			e.buckets[name] = old
			continue
		}
		// A new bucket starts full: a caller gets its burst at once.
		e.buckets[name] = &bucket{rate: *ent.rate, lim: rate.NewLimiter(rate.Limit(ent.rate.PerSecond), ent.rate.Burst)}
	}
	return e
}

func (e *enforced) bucket(caller string) (*bucket, bool) {
	if e == nil {
		return nil, false
	}
	b, ok := e.buckets[caller]
	return b, ok
}

// manyContacts are the requests that carry contacts: BatchCheck and the
// messages of FilterAudience.
type manyContacts interface{ GetContacts() []string }

// admit takes the tokens a call costs (req nil: a stream's opening) from
// its caller's bucket, or refuses it with RESOURCE_EXHAUSTED.
func (g *Guard) admit(ctx context.Context, rpc string, req any) error {
	caller, _ := caller.FromContext(ctx)
	b, ok := g.current.Load().bucket(caller)
	if !ok {
		return nil
	}
	n := 1
	switch m := req.(type) {
	case manyContacts:
		n = max(len(m.GetContacts()), 1)
	case batchWrites:
		n = max(len(m.GetWrites()), 1)
	}
	if n > b.rate.Burst {
		// It could never pass, and letting it pass for less would make a
		// batch a way around the limit.
		g.refused(ctx, caller, rpc, b.rate)
		return status.Errorf(codes.ResourceExhausted, "caller's rate limit (%s) exceeded: a batch of %d is more than the burst: send at most %d per call", b.rate, n, b.rate.Burst)
	}
	now := time.Now()
	if b.lim.AllowN(now, n) {
		return nil
	}
	// The time until the bucket holds n tokens, if nobody else takes any.
	g.refused(ctx, caller, rpc, b.rate)
	return errRateLimited(b.rate, (float64(n)-b.lim.TokensAt(now))/b.rate.PerSecond)
}

// pace waits until caller's bucket has given n tokens, for the contacts of
// one stream message, in pieces of at most the burst.
func (g *Guard) pace(ctx context.Context, rpc string, n int) error {
	caller, _ := caller.FromContext(ctx)
	for n > 0 {
		// Looked up again for each piece: a reload applies mid-stream.
		b, ok := g.current.Load().bucket(caller)
		if !ok {
			return nil
		}
		k := min(n, b.rate.Burst)
		if err := b.lim.WaitN(ctx, k); err != nil {
			if ctx.Err() != nil {
				return status.FromContextError(ctx.Err()).Err()
			}
			// The wait would outlast the stream's deadline.
			g.refused(ctx, caller, rpc, b.rate)
			return errRateLimited(b.rate, float64(k)/b.rate.PerSecond)
		}
		n -= k
	}
	return nil
}

// maxRetryHint caps the retry hint of a very slow rate.
const maxRetryHint = 24 * time.Hour

// errRateLimited is the status of a call refused for rate: the limit and
// when to try again (after seconds, rounded up to the millisecond). The
// hint is in the message only: a RetryInfo detail would take genproto into
// this package for little a caller could not read from the text.
func errRateLimited(r Rate, seconds float64) error {
	wait := maxRetryHint
	if seconds < maxRetryHint.Seconds() {
		wait = max(time.Duration(math.Ceil(seconds*1e3))*time.Millisecond, time.Millisecond)
	}
	return status.Errorf(codes.ResourceExhausted, "caller's rate limit (%s) exceeded: retry in %v", r, wait)
}

// refused logs a refusal for rate, at most once per caller and RPC a while
// (logthrottle.Every), with the number refused since the last line.
func (g *Guard) refused(ctx context.Context, caller, rpc string, r Rate) {
	if n, ok := g.quiet.Allow("rate\x00"+caller+"\x00"+rpc, time.Now()); ok {
		g.log.WarnContext(ctx, "rate limited", "caller", caller, "rpc", rpc, "limit", r.String(), "refused", n+1)
	}
}
