package importer

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/consentd/consentd/consent"
)

// reportWriter writes an import's outcomes into --out as they come, in
// input order: the rejects file, one file per re-permission segment, and at
// the end the counts.
type reportWriter struct {
	dir      string
	purposes []consent.Purpose
	counts   map[string]*[numOutcomes]int
	rows     int
	rejected int
	grants   int
	withdraw int

	rejectsFile *os.File
	rejects     *csv.Writer
	segments    map[segmentKey]*segmentFile
}

type segmentKey struct {
	purpose string
	o       outcome
}

type segmentFile struct {
	f *os.File
	w *csv.Writer
}

// newReportWriter prepares dir: it creates it, and removes the segment
// files of an earlier run, so a re-run's report is its own.
func newReportWriter(dir string, reg *consent.Registry) (*reportWriter, error) {
	rw := &reportWriter{dir: dir, purposes: reg.All(), counts: map[string]*[numOutcomes]int{},
		segments: map[segmentKey]*segmentFile{}}
	for _, p := range rw.purposes {
		rw.counts[p.Name] = new([numOutcomes]int)
	}
	// The segments hold raw contacts: the operator's eyes only.
	if err := os.MkdirAll(filepath.Join(dir, "repermission"), 0o700); err != nil {
		return nil, fmt.Errorf("--out: %w", err)
	}
	for _, p := range rw.purposes {
		for _, o := range repermission {
			if err := os.Remove(rw.segmentPath(p.Name, o.String())); err != nil && !errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("--out: %w", err)
			}
		}
	}
	f, err := createPrivate(filepath.Join(dir, "rejects.csv"))
	if err != nil {
		return nil, fmt.Errorf("--out: %w", err)
	}
	rw.rejectsFile, rw.rejects = f, csv.NewWriter(f)
	rw.rejects.Write([]string{"line", "reason"})
	return rw, nil
}

func (rw *reportWriter) segmentPath(purpose, reason string) string {
	return filepath.Join(rw.dir, "repermission", purpose+"."+reason+".csv")
}

// add records the outcomes of a processed batch.
func (rw *reportWriter) add(b *batch) error {
	rw.grants += b.grants
	rw.withdraw += b.withdrawals
	for i := range b.rows {
		r := &b.rows[i]
		o := b.out[i]
		rw.rows++
		line := strconv.Itoa(r.line)
		if o == outRejected {
			rw.rejected++
			if err := rw.rejects.Write([]string{line, r.reject}); err != nil {
				return err
			}
			continue
		}
		rw.counts[r.purpose][o]++
		if !o.asks() {
			continue
		}
		seg, err := rw.segment(r.purpose, o)
		if err != nil {
			return err
		}
		if err := seg.w.Write([]string{r.contact, line}); err != nil {
			return err
		}
	}
	return nil
}

// segment opens a segment's file on its first row: only non-empty
// segments have one.
func (rw *reportWriter) segment(purpose string, o outcome) (*segmentFile, error) {
	k := segmentKey{purpose, o}
	if s, ok := rw.segments[k]; ok {
		return s, nil
	}
	f, err := createPrivate(rw.segmentPath(purpose, o.String()))
	if err != nil {
		return nil, err
	}
	s := &segmentFile{f: f, w: csv.NewWriter(f)}
	rw.segments[k] = s
	return s, s.w.Write([]string{"contact", "line"})
}

// flush writes out and closes every file but the counts.
func (rw *reportWriter) flush() error {
	var errs []error
	for _, s := range rw.segments {
		s.w.Flush()
		errs = append(errs, s.w.Error(), s.f.Close())
	}
	rw.segments = map[segmentKey]*segmentFile{}
	if rw.rejectsFile != nil {
		rw.rejects.Flush()
		errs = append(errs, rw.rejects.Error(), rw.rejectsFile.Close())
		rw.rejectsFile = nil
	}
	return errors.Join(errs...)
}

// close releases the files of a report cut short by an error.
func (rw *reportWriter) close() { rw.flush() }

// Report is a finished import's report: report.json and report.txt, as
// written into Config.Out.
type Report struct {
	JSON, Text []byte
}

// reportJSON is report.json; the field order is the file's.
type reportJSON struct {
	File           string        `json:"file"`
	DryRun         bool          `json:"dry_run"`
	Rows           int           `json:"rows"`
	Rejected       int           `json:"rejected"`
	Purposes       purposeCounts `json:"purposes"`
	Imported       importedJSON  `json:"imported"`
	ElapsedSeconds float64       `json:"elapsed_seconds"`
	RowsPerSecond  float64       `json:"rows_per_second"`
}

type importedJSON struct {
	Grants      int `json:"grants"`
	Withdrawals int `json:"withdrawals"`
}

// countsJSON is one purpose's counts, every key always present.
type countsJSON struct {
	Valid            int `json:"valid"`
	Withdrawn        int `json:"withdrawn"`
	Suppressed       int `json:"suppressed"`
	NoRecord         int `json:"no_record"`
	MethodUnrecorded int `json:"method_unrecorded"`
	ThirdParty       int `json:"third_party"`
	NotSpecific      int `json:"not_specific"`
	Stale            int `json:"stale"`
}

func countsOf(c *[numOutcomes]int) countsJSON {
	return countsJSON{Valid: c[outValid], Withdrawn: c[outWithdrawn], Suppressed: c[outSuppressed],
		NoRecord: c[outNoRecord], MethodUnrecorded: c[outMethodUnrecorded], ThirdParty: c[outThirdParty],
		NotSpecific: c[outNotSpecific], Stale: c[outStale]}
}

func (c countsJSON) cells() []int {
	return []int{c.Valid, c.Withdrawn, c.Suppressed, c.NoRecord, c.MethodUnrecorded, c.ThirdParty, c.NotSpecific, c.Stale}
}

// purposeCounts is an object keyed by purpose in registry order (a Go map
// would sort them).
type purposeCounts struct {
	names  []string
	counts []countsJSON
}

func (pc purposeCounts) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, name := range pc.names {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(name)
		v, err := json.Marshal(pc.counts[i])
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// finish closes the report's files and writes report.json and report.txt.
// lacking lists the proof fields the input has no column for.
func (rw *reportWriter) finish(cfg *Config, elapsed time.Duration, lacking []string) (*Report, error) {
	if err := rw.flush(); err != nil {
		return nil, fmt.Errorf("--out: %w", err)
	}
	rep := reportJSON{File: cfg.File, DryRun: cfg.DryRun, Rows: rw.rows, Rejected: rw.rejected,
		Imported: importedJSON{Grants: rw.grants, Withdrawals: rw.withdraw}}
	rep.ElapsedSeconds = math.Round(elapsed.Seconds()*1000) / 1000
	if s := elapsed.Seconds(); s > 0 {
		rep.RowsPerSecond = math.Round(float64(rw.rows) / s)
	}
	for _, p := range rw.purposes {
		rep.Purposes.names = append(rep.Purposes.names, p.Name)
		rep.Purposes.counts = append(rep.Purposes.counts, countsOf(rw.counts[p.Name]))
	}
	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return nil, err
	}
	js = append(js, '\n')
	text := rw.text(&rep, lacking)
	for name, data := range map[string][]byte{"report.json": js, "report.txt": text} {
		if err := os.WriteFile(filepath.Join(rw.dir, name), data, 0o600); err != nil {
			return nil, fmt.Errorf("--out: %w", err)
		}
	}
	return &Report{JSON: js, Text: text}, nil
}

// text is report.txt, what import prints: the counts per purpose, where
// the lists are and, when rows are NO_RECORD for want of a status column,
// why.
func (rw *reportWriter) text(rep *reportJSON, lacking []string) []byte {
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PURPOSE\tVALID\tWITHDRAWN\tSUPPRESSED\tNO_RECORD\tMETHOD_UNRECORDED\tTHIRD_PARTY\tNOT_SPECIFIC\tSTALE")
	total := make([]int, 8)
	writeRow := func(name string, cells []int) {
		fmt.Fprint(tw, name)
		for _, n := range cells {
			fmt.Fprintf(tw, "\t%d", n)
		}
		fmt.Fprintln(tw)
	}
	for i, name := range rep.Purposes.names {
		cells := rep.Purposes.counts[i].cells()
		for j, n := range cells {
			total[j] += n
		}
		writeRow(name, cells)
	}
	writeRow("total", total)
	tw.Flush()
	fmt.Fprintf(&b, "rejected: %d rows (%s)\n", rep.Rejected, filepath.Join(rw.dir, "rejects.csv"))
	if rep.DryRun {
		fmt.Fprintln(&b, "dry run: nothing imported")
	} else {
		fmt.Fprintf(&b, "imported: %d grants, %d withdrawals\n", rep.Imported.Grants, rep.Imported.Withdrawals)
	}
	fmt.Fprintf(&b, "re-permission segments: %s%c\n", filepath.Join(rw.dir, "repermission"), filepath.Separator)
	noRecord := 0
	for _, c := range rep.Purposes.counts {
		noRecord += c.NoRecord
	}
	if noRecord > 0 && slices.Contains(lacking, fieldNames[fStatus]) {
		b.WriteString(whyNoRecord(lacking))
	}
	return b.Bytes()
}

// whyNoRecord tells whoever ran the import, in a marketer's words, why rows
// of a file without a status column are NO_RECORD, which columns would
// have imported them, and how to name columns called otherwise.
func whyNoRecord(lacking []string) string {
	return `why NO_RECORD: the file has no status column, so no row says whether the
person agreed, and nothing was imported. Consent is imported from the columns
that record it: status (granted or withdrawn), method (how the person agreed,
e.g. checkbox), captured_at (when), source (first_party or third_party) and
notice_version (the privacy notice they saw).
This file lacks: ` + strings.Join(lacking, ", ") + `.
If it has them under other names, map them: --map captured_at="Opt-in date"
(one --map FIELD=COLUMN per column), or --mapping FILE.
`
}

// progress reports an import's progress: a bar redrawn in place on a
// terminal, a plain line every cfg.Every otherwise.
type progress struct {
	w        io.Writer
	terminal bool
	every    time.Duration
	now      func() time.Time
	size     int64 // -1: unknown (stdin)
	read     *atomic.Int64
	rows     *atomic.Int64
	start    time.Time

	quit chan struct{}
	wg   sync.WaitGroup
}

// startProgress starts reporting; stop ends it.
func startProgress(cfg *Config, size int64, read, rows *atomic.Int64) *progress {
	p := &progress{w: cfg.Progress, terminal: cfg.Terminal, every: cfg.Every, now: cfg.Now, size: size,
		read: read, rows: rows, start: cfg.Now(), quit: make(chan struct{})}
	if p.w == nil {
		p.w = io.Discard
	}
	interval := p.every
	if p.terminal {
		interval = 200 * time.Millisecond
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-p.quit:
				return
			case <-t.C:
				p.report()
			}
		}
	}()
	return p
}

func (p *progress) report() {
	rows := p.rows.Load()
	elapsed := p.now().Sub(p.start)
	rate := 0.0
	if s := elapsed.Seconds(); s > 0 {
		rate = float64(rows) / s
	}
	pct, eta := "", ""
	if p.size > 0 {
		frac := min(float64(p.read.Load())/float64(p.size), 1)
		pct = fmt.Sprintf("%.0f%% read", frac*100)
		if frac > 0 {
			eta = (time.Duration(float64(elapsed)/frac) - elapsed).Round(time.Second).String()
		}
	}
	if !p.terminal {
		line := fmt.Sprintf("import: %d rows, %.0f rows/s", rows, rate)
		if pct != "" {
			line += ", " + pct + ", ETA " + eta
		}
		fmt.Fprintln(p.w, line)
		return
	}
	const width = 30
	bar := ""
	if p.size > 0 {
		filled := int(min(float64(p.read.Load())/float64(p.size), 1) * width)
		bar = "[" + repeat('=', filled) + repeat(' ', width-filled) + "] " + pct + ", "
	}
	line := fmt.Sprintf("%s%d rows, %.0f rows/s", bar, rows, rate)
	if eta != "" {
		line += ", ETA " + eta
	}
	fmt.Fprintf(p.w, "\rimport: %s\x1b[K", line)
}

func repeat(c byte, n int) string { return string(bytes.Repeat([]byte{c}, max(n, 0))) }

// stop ends the reports; done adds the final line.
func (p *progress) stop(done bool) {
	close(p.quit)
	p.wg.Wait()
	if p.terminal {
		fmt.Fprint(p.w, "\r\x1b[K")
	}
	if !done {
		return
	}
	rows := p.rows.Load()
	elapsed := p.now().Sub(p.start)
	rate := 0.0
	if s := elapsed.Seconds(); s > 0 {
		rate = float64(rows) / s
	}
	fmt.Fprintf(p.w, "import: done: %d rows in %s (%.0f rows/s)\n", rows, elapsed.Round(time.Millisecond), rate)
}

// createPrivate creates (or truncates) a file only its owner may read: the
// report's files name contacts.
func createPrivate(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
}
