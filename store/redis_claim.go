package store

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/consentd/consentd/consent"
)

// Request ids are one space per caller (consent.Write.Claim). The write
// script keeps a request id with its contact ({p}:q:<key><name>), in the
// contact's slot, so it can replay a retry atomically with the write; it
// cannot see a caller's other contacts, which live in other slots. So
// before any write, each request id is claimed: {q}:k:<name> holds the
// request it is bound to, in a partition q of its own (from the claim's
// name), next to that partition's marker, which the claim script checks
// like the write script does (a wiped store gets no new keys). It expires
// with the request ids (RequestTTL), so Audit does not count it.
//
// Every interleaving of the claim (C) and the write (W, the write script,
// with its contact-scoped replay unchanged):
//   - C binds, W applies: the first write.
//   - C binds, crash before W: a retry finds C bound to the same request and
//     goes on to W, which applies it, once.
//   - C, W, crash before the answer: a retry passes C and W replays the
//     first token; nothing is applied twice.
//   - The same request on two sidecars at once: both pass C (one binds, one
//     finds it bound to the same request); the two Ws are on one partition,
//     where the script's record check lets one apply and makes the other
//     plan again and replay.
//   - Two requests with the same (caller, id) at once, whatever their
//     contacts: C is one script on one key, so exactly one binds; the other
//     finds it bound to another request and is refused before any write.
//   - A request the rules refuse (an erased contact): C bound it, W refused
//     it and stored nothing; unbindAll then deletes the binding, if it is
//     still this request's, so the id is free again, as the embedded store
//     (which binds in W's transaction, only what it applies) leaves it. A
//     crash before unbindAll leaves the binding: the id stays this
//     request's until it expires, and its retry gets the same refusal.
//   - C expires (RequestTTL) before a retry: C binds again; the contact's
//     request id, set a moment after C and refreshed with it, replays. A
//     different request with the expired id is a new request, as with
//     any id past its TTL.
//   - A failover that loses C but not W (asynchronous replication,
//     WaitReplicas waits for W only): a retry binds C again and replays.
var claimScript = newScript("claim.lua")

// unbindScript deletes a claim if it still binds the request.
var unbindScript = newScript("unbind.lua")

func claimKey(q uint32, name [32]byte) string { return tag(q) + ":k:" + string(name[:]) }

// bound is what claiming found: the request an id was already bound to
// (found), or nothing (the claim bound it now).
type bound struct {
	request [32]byte
	found   bool
}

// claimAll claims the request ids of ws, in one pipeline, and returns what
// each claim found by name. A write with a repeated name is claimed once:
// the plan compares repeats within a batch.
func (s *Redis) claimAll(ctx context.Context, ws []consent.Write) (map[[32]byte]bound, error) {
	type pending struct {
		q   uint32
		req [32]byte
		cmd *redis.Cmd
	}
	claims := map[[32]byte]*pending{}
	for i := range ws {
		if ws[i].RequestName() == "" {
			continue
		}
		name, req := ws[i].Claim()
		if claims[name] == nil {
			claims[name] = &pending{q: consent.Key(name).Partition(s.cfg.Partitions), req: req}
		}
	}
	if len(claims) == 0 {
		return nil, nil
	}
	calls := make([]scriptCall, 0, len(claims))
	names := make([][32]byte, 0, len(claims))
	for name, p := range claims {
		calls = append(calls, scriptCall{keys: []string{markerKey(p.q), claimKey(p.q, name)}, args: []any{s.markerID(p.q), p.req[:], s.cfg.RequestTTL.Milliseconds()}})
		names = append(names, name)
	}
	results := s.runAll(ctx, claimScript, calls)
	out := make(map[[32]byte]bound, len(claims))
	for i, name := range names {
		p := claims[name]
		res, err := results[i].Slice()
		if err != nil {
			return nil, redisErr(err)
		}
		switch res[0] {
		case "new":
			out[name] = bound{}
		case "bound":
			b := bound{found: true}
			got, _ := res[1].(string)
			copy(b.request[:], got)
			if len(got) != len(b.request) {
				b.request = [32]byte{} // unreadable: never equal to a request
			}
			out[name] = b
		case "lost":
			what := "is missing"
			if res[1] == "other" {
				what = "holds another store's id"
			}
			return nil, s.fail(lostf("partition %d's marker %s %s on %s; write refused, nothing written", p.q, markerKey(p.q), what, s.nodeName(ctx, markerKey(p.q))))
		default:
			return nil, fmt.Errorf("store: redis: claim refused: %v", res)
		}
	}
	return out, nil
}

// unbindAll frees the ids that claimAll bound for ws and that no write of
// ws was applied (or replayed) under: errs are the writes' outcomes.
// Best effort: a binding left behind expires.
func (s *Redis) unbindAll(ctx context.Context, ws []consent.Write, errs []error, claims map[[32]byte]bound) {
	kept := map[[32]byte]bool{}
	var free []consent.Write
	for i := range ws {
		if ws[i].RequestName() == "" {
			continue
		}
		name, _ := ws[i].Claim()
		switch {
		case claims[name].found: // bound before: not ours to free
		case errs[i] == nil:
			kept[name] = true
		default:
			free = append(free, ws[i])
		}
	}
	var calls []scriptCall
	for i := range free {
		name, req := free[i].Claim()
		if kept[name] {
			continue
		}
		kept[name] = true // once
		q := consent.Key(name).Partition(s.cfg.Partitions)
		calls = append(calls, scriptCall{keys: []string{claimKey(q, name)}, args: []any{req[:]}})
	}
	if len(calls) > 0 {
		s.runAll(ctx, unbindScript, calls)
	}
}

// scriptCall is one run of a script.
type scriptCall struct {
	keys []string
	args []any
}

// runAll runs script once per call, in one pipeline (whatever the slots),
// and returns the results in order. A call that did not run runs again on
// its own through Run, which loads the script and follows the Cluster's
// redirections as every single command does: a node that does not have
// the script yet (NOSCRIPT), a slot moving (MOVED, ASK, TRYAGAIN).
func (s *Redis) runAll(ctx context.Context, script *redis.Script, calls []scriptCall) []*redis.Cmd {
	cmds := make([]*redis.Cmd, len(calls))
	_, _ = s.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, c := range calls {
			cmds[i] = script.EvalSha(ctx, pipe, c.keys, c.args...)
		}
		return nil
	})
	for i, c := range calls {
		if err := cmds[i].Err(); err != nil && (strings.HasPrefix(err.Error(), "NOSCRIPT") || moved(err)) {
			cmds[i] = script.Run(ctx, s.rdb, c.keys, c.args...)
		}
	}
	return cmds
}

// claim answers the plan from what claimAll found.
func (f *prefetched) claim(name [32]byte) ([32]byte, bool, error) {
	b, ok := f.claims[name]
	if !ok {
		return [32]byte{}, false, errors.New("store: redis: a request id was not claimed before planning")
	}
	return b.request, b.found, nil
}
