package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"
)

// Row is one line of a report: a scenario over a transport, judged against a
// baseline measured in the same run.
type Row struct {
	Scenario  string
	Transport string // "tcp", "unix", ...
	Store     string // what the server stored its data in: "embedded", "redis"; "" when it does not matter
	Procs     int    // the server's GOMAXPROCS; 0 for the machine's default
	Probe     bool   // one step of a search (see MaxRate): in the JSON and the plots, not the table
	Result    *Result
	Baseline  string             // the Scenario this row is judged against, over the same Transport; "" for none
	Ratio     float64            // Result's p99 / the baseline's p99; 0 when unknown
	Extra     map[string]float64 // scenario-specific figures: hit ratio, contacts per second, ...
}

// SetRatios fills each row's Ratio from its Baseline row in rows (same
// Transport, Store and Procs). A row whose baseline is missing, empty or has a zero p99 gets 0:
// no ratio is better than an infinite one.
func SetRatios(rows []Row) {
	for i := range rows {
		r := &rows[i]
		r.Ratio = 0
		if r.Baseline == "" || r.Result == nil {
			continue
		}
		j := slices.IndexFunc(rows, func(b Row) bool {
			return b.Scenario == r.Baseline && b.Transport == r.Transport && b.Store == r.Store && b.Procs == r.Procs
		})
		if j < 0 || rows[j].Result == nil {
			continue
		}
		if base := rows[j].Result.P99(); base > 0 {
			r.Ratio = float64(r.Result.P99()) / float64(base)
		}
	}
}

// WriteMarkdown writes rows as a markdown table (latencies in µs, rates per
// second, one extra column per key found in any row's Extra), followed by the
// error samples of rows that had errors.
func WriteMarkdown(w io.Writer, rows []Row) error {
	var extras []string
	for _, r := range rows {
		for k := range r.Extra {
			if !slices.Contains(extras, k) {
				extras = append(extras, k)
			}
		}
	}
	slices.Sort(extras) // map order is random; the table's must not be

	var b strings.Builder
	head := append([]string{"scenario", "transport", "store", "procs", "offered/s", "achieved/s", "p50 µs", "p90 µs", "p99 µs", "p99.9 µs", "max µs", "errors", "p99 vs baseline"}, extras...)
	line(&b, head)
	align := make([]string, len(head))
	for i := range align {
		align[i] = "---:" // numbers right-aligned, so magnitudes line up
	}
	align[0], align[1], align[2] = "---", "---", "---"
	line(&b, align)
	for _, r := range rows {
		if r.Probe {
			continue
		}
		procs := "all"
		if r.Procs > 0 {
			procs = fmt.Sprint(r.Procs)
		}
		cells := []string{r.Scenario, r.Transport, r.Store, procs}
		if res := r.Result; res != nil {
			cells = append(cells, number(res.Offered), number(res.Achieved),
				us(res.P50()), us(res.P90()), us(res.P99()), us(res.P999()), us(res.Max()),
				fmt.Sprint(res.Errors))
		} else {
			cells = append(cells, "—", "—", "—", "—", "—", "—", "—", "—")
		}
		ratio := "—"
		if r.Ratio > 0 {
			ratio = fmt.Sprintf("%.2f× %s", r.Ratio, r.Baseline)
		}
		cells = append(cells, ratio)
		for _, k := range extras {
			if v, ok := r.Extra[k]; ok {
				cells = append(cells, number(v))
			} else {
				cells = append(cells, "")
			}
		}
		line(&b, cells)
	}

	first := true
	for _, r := range rows {
		if r.Result == nil || r.Result.Errors == 0 {
			continue
		}
		if first {
			b.WriteString("\nErrors:\n\n")
			first = false
		}
		fmt.Fprintf(&b, "- %s over %s", r.Scenario, r.Transport)
		if r.Store != "" {
			fmt.Fprintf(&b, " on %s", r.Store)
		}
		fmt.Fprintf(&b, ": %d of %d failed", r.Result.Errors, r.Result.Count)
		for _, s := range r.Result.ErrorSamples {
			fmt.Fprintf(&b, "\n  - `%s`", strings.ReplaceAll(oneLine(s), "`", "'"))
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func line(b *strings.Builder, cells []string) {
	b.WriteString("|")
	for _, c := range cells {
		b.WriteString(" ")
		b.WriteString(strings.ReplaceAll(oneLine(c), "|", `\|`))
		b.WriteString(" |")
	}
	b.WriteString("\n")
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// us formats a latency in microseconds: a tenth of a µs below 10 µs, whole
// µs above, which is all the histogram's precision supports.
func us(d time.Duration) string {
	if d < 10*time.Microsecond {
		return fmt.Sprintf("%.1f", micros(d))
	}
	return fmt.Sprintf("%.0f", micros(d))
}

// number formats a rate or a ratio with as many digits as a reader compares.
func number(v float64) string {
	switch a := math.Abs(v); {
	case v == math.Trunc(v) && a < 1e15, a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3g", v)
	}
}

// The JSON report's shape. Field names are a contract with whatever reads
// the reports; add fields, never rename them. Every field is always present
// (empty maps and arrays rather than null).
type reportJSON struct {
	Meta map[string]string `json:"meta"`
	Rows []rowJSON         `json:"rows"`
}

type rowJSON struct {
	Scenario  string             `json:"scenario"`
	Transport string             `json:"transport"`
	Store     string             `json:"store"`
	Procs     int                `json:"gomaxprocs"`
	Probe     bool               `json:"probe"`
	Baseline  string             `json:"baseline"`
	Ratio     float64            `json:"ratio"`
	Result    *Result            `json:"result"`
	Extra     map[string]float64 `json:"extra"`
}

// WriteJSON writes rows and meta (the command, the machine, the commit...) as
// one indented JSON object: {"meta": {...}, "rows": [{"scenario", "transport",
// "store", "gomaxprocs" (0: the default), "probe", "baseline", "ratio",
// "result": {...}, "extra": {...}}]}. See Result's
// MarshalJSON for the result's fields.
func WriteJSON(w io.Writer, rows []Row, meta map[string]string) error {
	out := reportJSON{Meta: meta, Rows: make([]rowJSON, 0, len(rows))}
	if out.Meta == nil {
		out.Meta = map[string]string{}
	}
	for _, r := range rows {
		// JSON has no NaN or infinity; name the figure rather than fail with
		// encoding/json's anonymous "unsupported value".
		if err := finite(r, "ratio", r.Ratio); err != nil {
			return err
		}
		for k, v := range r.Extra {
			if err := finite(r, "extra "+k, v); err != nil {
				return err
			}
		}
		if r.Result != nil {
			if err := finite(r, "offered", r.Result.Offered); err != nil {
				return err
			}
			if err := finite(r, "achieved", r.Result.Achieved); err != nil {
				return err
			}
		}
		extra := r.Extra
		if extra == nil {
			extra = map[string]float64{}
		}
		out.Rows = append(out.Rows, rowJSON{
			Scenario: r.Scenario, Transport: r.Transport, Store: r.Store, Procs: r.Procs, Probe: r.Probe, Baseline: r.Baseline,
			Ratio: r.Ratio, Result: r.Result, Extra: extra,
		})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // error samples read better with their < and > intact
	return enc.Encode(out)
}

func finite(r Row, what string, v float64) error {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return fmt.Errorf("bench: row %s over %s: %s is %v, which JSON cannot carry", r.Scenario, r.Transport, what, v)
	}
	return nil
}
