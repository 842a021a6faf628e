// Package soak is consentd's fault-injection soak: mixed load through the
// real client against two consentd sidecars sharing one real redis-server,
// while a schedule breaks things the way operators and machines do, and an
// oracle that judges every answer and every acknowledged write against what
// consentd promises (guarantees 2, 3, 4 and 7 of the README).
//
// cmd/consentbench runs it: `consentbench soak --duration 60s` is CI's run;
// an hour is
//
//	go run ./cmd/consentbench soak --duration 1h --out soak-out
//
// (about 8 faults a minute with the defaults; the report is soak-out/soak.md
// and soak-out/soak.json, and the exit status is 1 if any rule below was
// broken). docs/reliability.md records a 10-minute run.
//
// # The setup
//
// One redis-server (internal/redisproc: appendonly yes, appendfsync always,
// maxmemory-policy noeviction, on a loopback port, in a directory of its
// own), two consentd processes started by PID from a built binary: sidecar A
// talks to Redis directly, sidecar B through a faultproxy, so B's
// connections (its change feed among them) can be cut or stalled alone. The
// first sidecar starts with --redis-init, which initialises the empty store.
//
// # The load
//
// Open-loop (bench.Run), bounded in count and time, loopback only, through
// one client per sidecar:
//
//   - Checks at --rate, alternating between the sidecars; half of them ask
//     about a contact just written (the interesting moment), half about any
//     contact; half pass, as at_least_as_fresh, the token of the latest
//     acknowledged write of that contact.
//   - Writes at --write-rate, on either sidecar: grants (50%), withdrawals
//     (40%) of one purpose, erasures (10%). Grants and withdrawals carry
//     captured_at = the moment the request is sent, so their order is their
//     date, whatever order they land in. Writes of one contact never overlap:
//     the next starts after the previous one was answered or failed.
//   - FilterAudience streams at --stream-rate over a slice of the contacts;
//     every contact a stream lets through is an ALLOW answer.
//   - After each fault's recovery, and at the end, an audit reads every
//     contact with GetContact (a fully consistent read of the store).
//
// # The faults
//
// One at a time, --fault-interval apart, each held --fault-hold, cycling
// through:
//
//   - sigstop: SIGSTOP of redis-server, SIGCONT after the hold.
//   - sigkill: SIGKILL of redis-server, restarted after the hold on the same
//     port and data directory (its AOF: acknowledged writes must survive).
//   - flushall: FLUSHALL. The operator waits (up to --notice-timeout) until
//     both sidecars are NOT_SERVING, then restarts A with --redis-init and B
//     plainly.
//   - drift: CONFIG SET maxmemory-policy allkeys-lru. The operator puts
//     noeviction back once both sidecars are NOT_SERVING (consentd checks
//     its settings every few seconds): after the hold at least,
//     --notice-timeout at most. If the sidecars are not SERVING again
//     within --notice-timeout, the operator restarts them. (There is no
//     maxmemory, so nothing is evicted; if keys were evicted anyway, the
//     state is unknown from the drift to the recovery.)
//   - feed: B's proxy cuts every connection and stalls new ones for the
//     hold, then cuts again (bytes held meanwhile are dropped) and resumes.
//   - sidecar: kill -9 of one sidecar (A and B in turn), restarted after the
//     hold on the same address.
//
// A fault has recovered when both sidecars answer SERVING again (or after
// --recovery-timeout, which is a recovery failure). Both sidecars' health is
// polled every 50 ms throughout.
//
// # The rules
//
// Times are the load's own clock on the same machine as consentd. An answer
// or read "starts" just before its request is sent and "ends" when its reply
// came; a write is acknowledged ("acked") at the moment its OK reply came.
// "After" means: for an answer, its start is after the event; for a write,
// its ack is. For a (contact, purpose) pair and an observation made over
// [start, end], the settled state is that of the last acknowledged write of
// the pair acked before start (an erasure touches every purpose of its
// contact), or of a FLUSHALL whose reply came after that ack and before
// start: ALLOW for a grant, DENY for a withdrawal, an erasure, a FLUSHALL or
// no write at all. Writes that were not acknowledged may or may not have
// landed: an observation may also show the outcome of any write of the pair
// begun after the settling write began (a later date wins whenever it
// lands) and before end; after a FLUSHALL, of any write still in flight when
// it was sent or begun since; a DENY if the settling write was in flight
// during a FLUSHALL; and a DENY if an erasure that failed could still land
// (it clears the record whatever its date; one held up by a fault lands by
// that fault's recovery). An observation is explained if it shows one of
// these states.
//
// Each of these must be 0, or the run fails:
//
//   - lost-write: an audit read shows a state that is not explained: an
//     acknowledged write was lost (or a state appeared that no write made).
//     Writes destroyed by an injected FLUSHALL are forgiven by the rule
//     itself (the FLUSHALL settles the pair).
//   - ack-into-wiped: a write begun after a FLUSHALL's reply and
//     acknowledged before the operator launched the re-init (or at all, if
//     the re-init never came): consentd acknowledged a write into a store it
//     can no longer vouch for.
//   - allow-unknown: an ALLOW whose request started after a FLUSHALL's reply
//     and before the re-init was launched, if it started after the
//     answering sidecar was first polled not SERVING since the FLUSHALL, or
//     more than --lease after the reply; and any ALLOW in a recorded span of
//     unknown state (a drift during which keys were evicted). A grant of the
//     pair begun after the re-init (the span's end) and before the answer
//     explains it.
//   - allow-with-token: an unexplained ALLOW from a Check that passed the
//     token of the settling withdrawal or erasure, or of a later write of
//     the same contact.
//   - allow-beyond-lease: any other unexplained ALLOW whose request started
//     more than --lease after the settling write's ack (or the FLUSHALL's
//     reply; with no write at all, any unexplained ALLOW).
//
// Unexplained ALLOWs within the lease and without such a token are what
// guarantee 2 permits; they are counted (allow_within_lease), not failed.
// So are ALLOWs after a FLUSHALL, within the lease, from a sidecar not yet
// seen NOT_SERVING (allow_before_notice): until its guard notices the wipe
// (within 1 s), a sidecar's cache is as stale as it is about a withdrawal
// its feed has not brought yet; once it has noticed, or past the lease,
// an ALLOW fails.
// These fail the run too:
//
//   - a recovery that fails: a sidecar that does not start, or is not
//     SERVING again within --recovery-timeout;
//   - contacts the final audit could not read;
//   - a sidecar that stayed SERVING through a fault it must report: every
//     Redis fault for both sidecars, the feed fault for B, a kill for the
//     sidecar killed. consentd must go NOT_SERVING within 1 s of its store
//     not answering or being wiped, so these are judged only when the fault
//     was held at least 3 s; a FLUSHALL and a drift always, as the operator
//     waits --notice-timeout for it;
//   - a Check slower than --stall (3 s: about 3 times what a Check takes
//     when each of the client's attempts meets consentd's 200 ms store
//     deadline).
//
// For each fault the report gives, per sidecar, the time from the injection
// to the first NOT_SERVING (or unreachable) poll and from the fault's end
// (SIGCONT, Redis restarted, the operator's first restart, the policy
// restored, the proxy resumed, the sidecar restarted) to SERVING, and the
// answers during the fault (from injection to recovery): the longest Check,
// errors, ALLOWs, writes acknowledged and refused.
package soak
