package soak

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/consentd/consentd/bench"
)

// Report is a soak's result: the oracle's findings, the load as it went and
// each fault's figures. Durations are in milliseconds.
type Report struct {
	Config   map[string]string `json:"config"`
	Started  time.Time         `json:"started"`
	Seconds  float64           `json:"seconds"`
	Findings Findings          `json:"findings"`
	// RecoveryFailures are faults after which the sidecars were not SERVING
	// again (or could not be restarted): each fails the run.
	RecoveryFailures int `json:"recovery_failures"`
	// Unverified is how many contacts the final audit could not read: the
	// oracle cannot vouch for them, which fails the run.
	Unverified int `json:"unverified"`
	// Undetected counts sidecars that stayed SERVING through a fault they
	// must report (see the package doc); each fails the run.
	Undetected int `json:"undetected"`
	// Stalled counts Checks slower than the stall bound; each fails the
	// run.
	Stalled int            `json:"stalled_checks"`
	Load    LoadFigures    `json:"load"`
	Faults  []FaultFigures `json:"faults"`
	// Health is every change of each sidecar's polled health.
	Health map[string][]HealthChange `json:"health"`
}

// HealthChange is a sidecar's health changing, at AtS from the start of the
// load.
type HealthChange struct {
	AtS   float64 `json:"at_s"`
	State string  `json:"state"`
}

// Failed reports whether the run broke a must-be-zero rule.
func (r *Report) Failed() bool {
	return r.Findings.Failed() || r.RecoveryFailures > 0 || r.Unverified > 0 || r.Undetected > 0 || r.Stalled > 0
}

// LoadFigures sums up the load.
type LoadFigures struct {
	Checks          int     `json:"checks"`
	ChecksWithToken int     `json:"checks_with_token"`
	CheckAllow      int     `json:"check_allow"`
	CheckDeny       int     `json:"check_deny"`
	CheckErrors     int     `json:"check_errors"`
	CheckP50Ms      float64 `json:"check_p50_ms"`
	CheckP99Ms      float64 `json:"check_p99_ms"`
	CheckMaxMs      float64 `json:"check_max_ms"`
	Writes          int     `json:"writes"`
	WritesAcked     int     `json:"writes_acked"`
	WritesFailed    int     `json:"writes_failed"`
	WritesSkipped   int     `json:"writes_skipped"` // every contact tried was being written
	Grants          int     `json:"grants_acked"`
	Withdrawals     int     `json:"withdrawals_acked"`
	Erasures        int     `json:"erasures_acked"`
	Streams         int     `json:"streams"`
	StreamErrors    int     `json:"stream_errors"`
	StreamAllows    int     `json:"stream_allows"`
	Audits          int     `json:"audits"`
	Reads           int     `json:"reads"`
}

// FaultFigures is one fault as it went. A nil time means it did not happen
// (the sidecar never left SERVING).
type FaultFigures struct {
	N      int     `json:"n"`
	Kind   string  `json:"kind"`
	Target string  `json:"target"`
	AtS    float64 `json:"at_s"` // injection, from the start of the load
	HeldMs float64 `json:"held_ms"`
	// Per sidecar (A, B): from the injection to the first poll that was not
	// SERVING, and from the fault's end to SERVING again.
	ToNotServingMs []*float64 `json:"to_not_serving_ms"`
	ToServingMs    []*float64 `json:"to_serving_ms"`
	// RecoveredMs is from the fault's end until both were SERVING.
	RecoveredMs float64 `json:"recovered_ms"`
	// Checks started from the injection to the recovery.
	Checks       int      `json:"checks"`
	CheckErrors  int      `json:"check_errors"`
	MaxCheckMs   float64  `json:"max_check_ms"`
	Allows       int      `json:"allows"` // Checks' and streams'
	WritesAcked  int      `json:"writes_acked"`
	WritesFailed int      `json:"writes_failed"`
	Notes        []string `json:"notes,omitempty"`
	Failed       string   `json:"failed,omitempty"`
}

// sidecarNames returns the sidecars' names in order: A, B.
func sidecarNames(health map[string][]healthEvent) []string {
	names := slices.Collect(maps.Keys(health))
	slices.Sort(names)
	return names
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func buildReport(cfg Config, t0, end time.Time, l Log, calls []Call, skips int, faults []*fault, health map[string][]healthEvent,
	audits []audit, final audit, streams *bench.Result) *Report {
	r := &Report{
		Config: map[string]string{
			"duration": cfg.Duration.String(), "rate": fmt.Sprint(cfg.Rate), "write_rate": fmt.Sprint(cfg.WriteRate),
			"stream_rate": fmt.Sprint(cfg.StreamRate), "contacts": fmt.Sprint(cfg.Contacts), "seed": fmt.Sprint(cfg.Seed),
			"faults": strings.Join(cfg.Faults, ","), "fault_interval": cfg.FaultInterval.String(), "fault_hold": cfg.FaultHold.String(),
			"lease": cfg.Lease.String(), "request_timeout": cfg.RequestTimeout.String(), "redis_init": fmt.Sprint(cfg.RedisInit),
			"stall": cfg.Stall.String(),
		},
		Started:    t0.UTC(),
		Seconds:    end.Sub(t0).Seconds(),
		Findings:   Evaluate(l, cfg.Lease, t0),
		Unverified: final.unread,
		Health:     map[string][]HealthChange{},
	}
	for name, h := range health {
		for _, ev := range h {
			r.Health[name] = append(r.Health[name], HealthChange{AtS: ev.At.Sub(t0).Seconds(), State: ev.State.String()})
		}
	}
	lf := &r.Load
	var took []time.Duration
	for _, c := range calls {
		lf.Checks++
		took = append(took, c.Took)
		if c.Took > cfg.Stall {
			r.Stalled++
		}
		if c.Failed {
			lf.CheckErrors++
		}
	}
	slices.Sort(took)
	if n := len(took); n > 0 {
		lf.CheckP50Ms, lf.CheckP99Ms, lf.CheckMaxMs = ms(took[n/2]), ms(took[n*99/100]), ms(took[n-1])
	}
	for _, a := range l.Answers {
		switch {
		case a.Stream:
			lf.StreamAllows++
		case a.Allowed:
			lf.CheckAllow++
		default:
			lf.CheckDeny++
		}
		if a.Token >= 0 {
			lf.ChecksWithToken++
		}
	}
	for _, w := range l.Writes {
		lf.Writes++
		if !w.Acked {
			lf.WritesFailed++
			continue
		}
		lf.WritesAcked++
		switch w.Kind {
		case Grant:
			lf.Grants++
		case Withdraw:
			lf.Withdrawals++
		case Erase:
			lf.Erasures++
		}
	}
	lf.WritesSkipped = skips
	if streams != nil {
		lf.Streams, lf.StreamErrors = int(streams.Count), int(streams.Errors)
	}
	lf.Audits, lf.Reads = len(audits)+1, len(l.Reads)

	for i, f := range faults {
		ff := FaultFigures{N: i + 1, Kind: f.Kind, Target: f.Target, Notes: f.Notes, Failed: f.Failed,
			AtS: f.Injected.Sub(t0).Seconds(), HeldMs: ms(f.Ended.Sub(f.Injected))}
		if f.Failed != "" {
			r.RecoveryFailures++
		}
		if !f.Ended.IsZero() {
			ff.RecoveredMs = ms(f.Recovered.Sub(f.Ended))
		}
		for i, name := range sidecarNames(health) {
			down, up := transitions(health[name], f.Injected, f.Ended, f.Recovered)
			ff.ToNotServingMs = append(ff.ToNotServingMs, down)
			ff.ToServingMs = append(ff.ToServingMs, up)
			if down == nil && f.judged && slices.Contains(f.Expect, i) && !f.Ended.IsZero() {
				r.Undetected++
				ff.Notes = append(ff.Notes, "**"+name+" stayed SERVING**")
			}
		}
		in := func(t time.Time) bool { return !t.Before(f.Injected) && !t.After(f.Recovered) }
		for _, c := range calls {
			if in(c.Start) {
				ff.Checks++
				if c.Failed {
					ff.CheckErrors++
				}
				ff.MaxCheckMs = max(ff.MaxCheckMs, ms(c.Took))
			}
		}
		for _, a := range l.Answers {
			if a.Allowed && in(a.Start) {
				ff.Allows++
			}
		}
		for _, w := range l.Writes {
			if in(w.End) {
				if w.Acked {
					ff.WritesAcked++
				} else {
					ff.WritesFailed++
				}
			}
		}
		r.Faults = append(r.Faults, ff)
	}
	return r
}

// transitions returns, from a sidecar's health changes, the time from
// injected to its first poll that was not SERVING, if that came by ended
// (later, it is the operator's doing), and from ended to the SERVING that
// ended its last spell out of SERVING before recovered; nil for what did not
// happen.
func transitions(h []healthEvent, injected, ended, recovered time.Time) (down, up *float64) {
	state := Down
	out := false // left SERVING since the injection
	for _, ev := range h {
		if ev.At.After(recovered) {
			break
		}
		if !ev.At.After(injected) {
			state = ev.State
			continue
		}
		if ev.State != Serving && state == Serving {
			if !out && !ev.At.After(ended) {
				d := ms(ev.At.Sub(injected))
				down = &d
			}
			out = true
		}
		if ev.State == Serving && state != Serving && out {
			d := ms(max(ev.At.Sub(ended), 0))
			up = &d
		}
		state = ev.State
	}
	return down, up
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// text says what the rule counts, for the table.
func (r Rule) text() string {
	switch r {
	case LostWrite:
		return "acknowledged writes lost (audit reads not explained by the writes)"
	case WipedAck:
		return "writes acknowledged after a FLUSHALL, before the re-init"
	case AllowWithToken:
		return "ALLOW after an acknowledged withdrawal/erasure, Check passed its consistency token"
	case AllowBeyondLease:
		return "ALLOW after an acknowledged withdrawal/erasure (or with no grant), beyond the lease"
	case AllowUnknown:
		return "ALLOW while the store's state was unknown (after a FLUSHALL, before the re-init: once the sidecar was NOT_SERVING, or past the lease)"
	}
	return string(r)
}

// WriteMarkdown writes the report's tables.
func (r *Report) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	verdict := "PASS: every must-be-zero count is 0"
	if r.Failed() {
		verdict = "FAIL: a must-be-zero count is not 0"
	}
	fmt.Fprintf(&b, "**%s** (%.0f s of load from %s, seed %s, faults %s)\n\n", verdict, r.Seconds,
		r.Started.Format(time.RFC3339), r.Config["seed"], r.Config["faults"])
	b.WriteString("| rule | count | must be 0 |\n| --- | ---: | :---: |\n")
	for _, rule := range Rules() {
		fmt.Fprintf(&b, "| %s (`%s`) | %d | yes |\n", rule.text(), rule, r.Findings.Counts[rule])
	}
	fmt.Fprintf(&b, "| faults the sidecars did not recover from | %d | yes |\n", r.RecoveryFailures)
	fmt.Fprintf(&b, "| contacts the final audit could not read | %d | yes |\n", r.Unverified)
	fmt.Fprintf(&b, "| sidecars that stayed SERVING through a fault they must report | %d | yes |\n", r.Undetected)
	fmt.Fprintf(&b, "| Checks slower than %s | %d | yes |\n", r.Config["stall"], r.Stalled)
	fmt.Fprintf(&b, "| ALLOW after an acknowledged withdrawal/erasure, no consistency token, within the lease (%s; permitted) | %d | no |\n",
		r.Config["lease"], r.Findings.AllowWithinLease)
	fmt.Fprintf(&b, "| ALLOW after a FLUSHALL, within the lease, before the sidecar was seen NOT_SERVING (permitted) | %d | no |\n\n",
		r.Findings.AllowBeforeNotice)

	l := r.Load
	b.WriteString("| load | |\n| --- | --- |\n")
	fmt.Fprintf(&b, "| Checks | %d (%d with a consistency token): %d ALLOW, %d DENY, %d failed |\n", l.Checks, l.ChecksWithToken, l.CheckAllow, l.CheckDeny, l.CheckErrors)
	fmt.Fprintf(&b, "| Check latency | p50 %.1f ms, p99 %.1f ms, max %.0f ms |\n", l.CheckP50Ms, l.CheckP99Ms, l.CheckMaxMs)
	fmt.Fprintf(&b, "| writes | %d sent: %d acknowledged (%d grants, %d withdrawals, %d erasures), %d failed; %d not sent (contacts busy) |\n",
		l.Writes, l.WritesAcked, l.Grants, l.Withdrawals, l.Erasures, l.WritesFailed, l.WritesSkipped)
	fmt.Fprintf(&b, "| FilterAudience | %d streams (%d failed), %d contacts let through |\n", l.Streams, l.StreamErrors, l.StreamAllows)
	fmt.Fprintf(&b, "| audits | %d full reads of every contact, %d reads |\n\n", l.Audits, l.Reads)

	if len(r.Faults) > 0 {
		b.WriteString("| # | fault | at | held | → NOT_SERVING A / B | → SERVING A / B | both SERVING | longest Check | Checks (failed) | ALLOW | writes acked / failed | notes |\n")
		b.WriteString("| ---: | --- | ---: | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |\n")
		for _, f := range r.Faults {
			notes := strings.Join(f.Notes, "; ")
			if f.Failed != "" {
				notes = strings.TrimPrefix(notes+"; **recovery failed: "+f.Failed+"**", "; ")
			}
			fmt.Fprintf(&b, "| %d | %s %s | %.0f s | %.1f s | %s | %s | %.1f s | %.0f ms | %d (%d) | %d | %d / %d | %s |\n",
				f.N, f.Kind, f.Target, f.AtS, f.HeldMs/1000, pair2(f.ToNotServingMs), pair2(f.ToServingMs), f.RecoveredMs/1000,
				f.MaxCheckMs, f.Checks, f.CheckErrors, f.Allows, f.WritesAcked, f.WritesFailed, strings.ReplaceAll(notes, "|", "/"))
		}
		b.WriteString("\n")
	}
	if len(r.Findings.Samples) > 0 {
		b.WriteString("First violations of each rule (contact and purpose by index, times from the start of the load):\n\n")
		for _, v := range r.Findings.Samples {
			fmt.Fprintf(&b, "- `%s` contact %d purpose %d on %c at %v: %s\n", v.Rule, v.Contact, v.Purpose, 'A'+rune(v.Sidecar),
				v.At.Round(time.Millisecond), v.Detail)
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// pair2 formats per-sidecar times in ms as "A / B", "—" for what did not
// happen.
func pair2(v []*float64) string {
	var parts []string
	for _, x := range v {
		if x == nil {
			parts = append(parts, "—")
			continue
		}
		parts = append(parts, fmt.Sprintf("%.0f ms", *x))
	}
	return strings.Join(parts, " / ")
}
