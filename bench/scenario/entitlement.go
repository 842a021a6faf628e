package scenario

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/consentd/consentd/bench"
	"github.com/consentd/consentd/client"
)

// The entitlement scenarios: warm Check without caller identity ("plain")
// and with a bearer token and a policy file ("entitled"), each on a sidecar
// of its own, at one rate, measured in turns. The target is that entitlements add no
// measurable latency to a warm Check: the entitled row is judged against
// the plain one (see setBudgets).
const (
	plainCheck    = "check-warm-plain"
	plainFloor    = "floor-warm-plain"
	entitledCheck = "check-warm-entitled"
	entitledFloor = "floor-warm-entitled"
	// benchCaller is the load's caller in the tokens and policy files.
	benchCaller = "consentbench"
	// policyCallers is how many other callers the files name, so the
	// lookups are among many entries, as in a deployment with many senders.
	policyCallers = 100
)

// entitlementFiles writes a tokens file and a policy file into dir and
// returns their paths and the load's bearer token. The load's caller may
// Check email_marketing (what the scenario measures) and FilterAudience on
// ad_retargeting (how the harness fills the cache); the other callers have
// other entitlements.
func entitlementFiles(dir string) (tokens, policy, token string, err error) {
	var tb, pb strings.Builder
	tb.WriteString("# consentbench: NAME SHA256HEX\n")
	pb.WriteString(`{"callers": {` + "\n")
	add := func(name, tok, entitlement string) {
		h := sha256.Sum256([]byte(tok))
		fmt.Fprintf(&tb, "%s %s\n", name, hex.EncodeToString(h[:]))
		fmt.Fprintf(&pb, "  %q: %s,\n", name, entitlement)
	}
	token = rand.Text() // a fresh secret per run: the files are scratch
	add(benchCaller, token, `{"rpcs": ["Check", "FilterAudience"], "purposes": ["email_marketing", "ad_retargeting"]}`)
	for i := range policyCallers {
		ent := `{"rpcs": ["Check", "BatchCheck"], "purposes": ["ad_retargeting"]}`
		if i%2 == 1 {
			ent = `{"rpcs": ["Check", "Grant", "Withdraw"], "purposes": ["sales_outreach", "email_marketing"]}`
		}
		add(fmt.Sprintf("sender-%03d", i), rand.Text(), ent)
	}
	pb.WriteString(`  "dpo-tool": {"rpcs": ["*"], "purposes": ["*"]}` + "\n}}\n")
	tokens, policy = filepath.Join(dir, "tokens"), filepath.Join(dir, "policy.json")
	if err := os.WriteFile(tokens, []byte(tb.String()), 0o600); err != nil {
		return "", "", "", err
	}
	if err := os.WriteFile(policy, []byte(pb.String()), 0o600); err != nil {
		return "", "", "", err
	}
	return tokens, policy, token, nil
}

// entitlement measures warm Check and the floor over TCP at
// entitlementRate on two sidecars on st, both running at once: one without
// caller identity, one with --tokens and --policy, the load sending the
// token. The two are measured in turns (see interleave), so a burst of
// other work on the machine lands on both alike instead of on whichever
// happened to run then.
func (r *runner) entitlement(ctx context.Context, st *storeEnv) error {
	tokens, policy, token, err := entitlementFiles(r.dir)
	if err != nil {
		return err
	}
	// The embedded store is one process's: the second sidecar runs on a
	// copy of it.
	twin, err := copyEmbedded(st, st.data+"-entitled")
	if err != nil {
		return err
	}
	defer os.RemoveAll(twin.data)
	plain := setup{transport: "tcp", warm: true, procs: r.Procs[0], label: "plain"}
	entitled := plain
	entitled.label, entitled.args, entitled.token = "entitled", []string{"--tokens", tokens, "--policy", policy}, token
	// The inner block keeps its rows first; the report shows the plain
	// ones first, as the baseline.
	defer func(n int) {
		order := []string{plainCheck, plainFloor, entitledCheck, entitledFloor}
		slices.SortStableFunc(r.rows[n:], func(a, b bench.Row) int {
			return slices.Index(order, strings.Split(a.Scenario, "@")[0]) - slices.Index(order, strings.Split(b.Scenario, "@")[0])
		})
	}(len(r.rows))
	return r.block(ctx, st, plain, func(p *session) error {
		return r.block(ctx, twin, entitled, func(e *session) error {
			at := fmt.Sprintf("@%g/s", r.EntitlementRate)
			return r.interleave(ctx, r.EntitlementRate, []arm{
				{p, plainCheck + at, plainFloor + at, bench.CheckOp(p.client, r.contacts, "email_marketing")},
				{e, entitledCheck + at, plainCheck + at, bench.CheckOp(e.client, r.contacts, "email_marketing")},
				{p, plainFloor + at, "", bench.FloorOp(p.client)},
				{e, entitledFloor + at, "", bench.FloorOp(e.client)},
			})
		})
	})
}

// copyEmbedded copies the files of st, an embedded store no sidecar has
// open, into dir and returns the copy.
func copyEmbedded(st *storeEnv, dir string) (*storeEnv, error) {
	if st.kind != "embedded" {
		return nil, fmt.Errorf("copying a %s store: only an embedded one can be copied", st.kind)
	}
	entries, err := os.ReadDir(st.data)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		if err := copyFile(filepath.Join(st.data, e.Name()), filepath.Join(dir, e.Name())); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	return &storeEnv{kind: st.kind, data: dir, args: []string{"--data-dir", dir}, close: func() {}}, nil
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fi.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// An arm is one scenario of an interleaved comparison.
type arm struct {
	s        *session
	name     string
	baseline string
	op       bench.Op
}

// interleave measures arms at rate in entitlementRounds rounds, each arm
// for an equal slice of the measured duration per round, in the order
// given in even rounds and reversed in odd ones (so a drift in the
// machine's load favours none), and adds one row per arm with the slices
// merged. The first slice of each arm warms up for the full warmup; later
// ones for a quarter of it, as their sidecar has been idle for only a few
// slices.
func (r *runner) interleave(ctx context.Context, rate float64, arms []arm) error {
	rounds := r.EntitlementRounds
	slice := r.Duration / time.Duration(rounds)
	results := make([]*bench.Result, len(arms))
	for round := range rounds {
		fmt.Fprintf(r.stderr, "running round %d of %d: %d scenarios at %g/s for %v each...\n", round+1, rounds, len(arms), rate, slice)
		for k := range arms {
			i := k
			if round%2 == 1 {
				i = len(arms) - 1 - k
			}
			warmup := r.Warmup / 4
			if results[i] == nil {
				warmup = r.Warmup
			}
			res, err := bench.Run(ctx, bench.Load{Rate: rate, Duration: slice, Warmup: warmup, Workers: r.Workers}, arms[i].op)
			if err != nil {
				return fmt.Errorf("%s: %w", arms[i].s.describe(arms[i].name), err)
			}
			if results[i] == nil {
				results[i] = res
			} else {
				results[i].Merge(res)
			}
		}
	}
	for i, a := range arms {
		// Merge adds rates, as for loads running side by side; these ran
		// one after another at the same rate.
		res := results[i]
		res.Offered, res.Achieved = rate, res.Achieved/float64(rounds)
		a.s.add(bench.Row{Scenario: a.name, Result: res, Baseline: a.baseline, Extra: map[string]float64{"rounds": float64(rounds)}})
	}
	return nil
}

// clientOptions are the load client's options for su: its bearer token,
// when it has one.
func (su setup) clientOptions() []client.Option {
	if su.token == "" {
		return nil
	}
	return []client.Option{client.WithBearerToken(su.token)}
}
