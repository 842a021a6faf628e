// Package importer is the engine of consentctl import: it reads another
// system's consent records (CSV or NDJSON), has consent.Classify decide
// what each (contact, purpose) comes to, writes the valid yeses and the
// withdrawals into consentd, and leaves a report of the rest (who to ask
// again, and why). Its messages name the consentctl import flags that set
// each Config field, since the operator who set them reads them.
package importer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc/codes"

	"github.com/consentd/consentd/client"
	"github.com/consentd/consentd/consent"
	"github.com/consentd/consentd/internal/identifier"
	pb "github.com/consentd/consentd/proto/consent/v1"
)

// The defaults of consentctl import's --batch and --in-flight.
const (
	DefaultBatch    = 5000
	DefaultInFlight = 4
)

// Config is what an import runs with: consentctl import's flags, and what
// tests replace (the clock, the terminal test, the progress interval).
type Config struct {
	File   string // the input; "-" reads Stdin
	Format string // csv or ndjson; "": ndjson for .ndjson and .jsonl files, else csv
	// Out is the directory the report goes to; "": File.report, or
	// import.report for stdin.
	Out      string
	Mapping  *Mapping // nil: every field from the column of its own name
	DryRun   bool     // classify and report, write nothing
	Batch    int      // (contact, purpose) rows per call, 1 to consent.MaxBatch
	InFlight int      // batches sent at once, at least 1
	Actor    string   // who records the writes, kept with every event
	// DefaultRegion is the CLDR region (GB) phone numbers written without
	// + and a country code are read in; "": such rows are rejected.
	DefaultRegion string

	Stdin io.Reader
	// Progress receives the progress reports: a bar redrawn in place when
	// Terminal, else a plain line every Every.
	Progress io.Writer
	Terminal bool
	Every    time.Duration
	Now      func() time.Time
}

// check refuses a Config that cannot run, and fills in the defaults.
func (cfg *Config) check() error {
	switch {
	case cfg.Batch < 1 || cfg.Batch > consent.MaxBatch:
		return fmt.Errorf("--batch must be between 1 and %d, got %d", consent.MaxBatch, cfg.Batch)
	case cfg.InFlight < 1:
		return fmt.Errorf("--in-flight must be at least 1, got %d", cfg.InFlight)
	case cfg.File == "-" && cfg.Stdin == nil:
		return errors.New("importing standard input, but there is none to read")
	}
	if err := consent.CheckLabel("--actor", cfg.Actor); err != nil {
		return err
	}
	if cfg.DefaultRegion != "" {
		if err := identifier.CheckRegion(cfg.DefaultRegion); err != nil {
			return fmt.Errorf("--default-region: %q is %w", cfg.DefaultRegion, err)
		}
	}
	switch cfg.Format {
	case "":
		cfg.Format = "csv"
		if ext := strings.ToLower(filepath.Ext(cfg.File)); ext == ".ndjson" || ext == ".jsonl" {
			cfg.Format = "ndjson"
		}
	case "csv", "ndjson":
	default:
		return fmt.Errorf("--format: unknown format %q (known: csv, ndjson)", cfg.Format)
	}
	if cfg.Out == "" {
		cfg.Out = cfg.File + ".report"
		if cfg.File == "-" {
			cfg.Out = "import.report"
		}
	}
	if cfg.Mapping == nil {
		cfg.Mapping = defaultMapping()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Every <= 0 {
		cfg.Every = 5 * time.Second
	}
	return nil
}

// batch is a run of consecutive (contact, purpose) rows sent together.
type batch struct {
	rows []row
	out  []outcome
	// grants and withdrawals count the writes consentd applied.
	grants, withdrawals int
	err                 error
	done                chan struct{}
}

// job is one run of an import.
type job struct {
	cfg      *Config
	client   *client.Client
	reg      *consent.Registry
	now      time.Time
	ids      identifier.Parser
	layout   *layout
	input    recordReader
	read     atomic.Int64 // bytes of the input read
	rowsDone atomic.Int64 // rows whose outcome is written
}

// Run imports cfg.File into consentd through c and writes the report,
// which it returns. An error ends the import (the file cannot be read,
// consentd refuses a write or cannot be reached, ctx is done); running it
// again finishes it, applying nothing twice.
func Run(ctx context.Context, c *client.Client, cfg Config) (*Report, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	start := cfg.Now()
	// The file first: a missing one is the operator's to fix before
	// consentd matters.
	var (
		in   io.Reader = cfg.Stdin
		size int64     = -1
	)
	if cfg.File != "-" {
		f, err := os.Open(cfg.File)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
			size = st.Size()
		}
		in = f
	}
	ps, err := c.ListPurposes(ctx)
	if err != nil {
		return nil, err
	}
	reg, err := registryOf(ps)
	if err != nil {
		return nil, err
	}
	imp := &job{cfg: &cfg, client: c, reg: reg, now: start,
		ids: identifier.Parser{DefaultRegion: cfg.DefaultRegion, Known: identifier.NewKnown(16)}}
	in = &countingReader{r: in, n: &imp.read}
	switch cfg.Format {
	case "ndjson":
		nd := newNDJSONInput(in)
		imp.layout, err = cfg.Mapping.resolve(reg, nd.column)
		imp.input = nd
	default:
		var cv *csvInput
		if cv, err = newCSVInput(in); err != nil {
			return nil, fmt.Errorf("%s: %w", cfg.File, err)
		}
		imp.layout, err = cfg.Mapping.resolve(reg, cv.column)
		imp.input = cv
	}
	if err != nil {
		return nil, err
	}
	rw, err := newReportWriter(cfg.Out, reg)
	if err != nil {
		return nil, err
	}
	defer rw.close()
	prog := startProgress(&cfg, size, &imp.read, &imp.rowsDone)
	if err := imp.pipeline(ctx, rw); err != nil {
		prog.stop(false)
		return nil, err
	}
	elapsed := cfg.Now().Sub(start)
	prog.stop(true)
	return rw.finish(&cfg, elapsed, imp.lacking())
}

// proofFields are the columns that record a yes, in the order the report
// names them.
var proofFields = [...]field{fStatus, fMethod, fCapturedAt, fSource, fNotice}

// lacking lists the proof fields the input has no column for. With purpose
// columns, those are the status, lacking only if none of them is there.
func (imp *job) lacking() []string {
	has := func(col int) bool { return col >= 0 && imp.input.present(col) }
	var out []string
	for _, f := range proofFields {
		ok := has(imp.layout.field[f])
		if f == fStatus && imp.layout.purposes != nil {
			ok = slices.ContainsFunc(imp.layout.purposes, func(pc purposeColumn) bool { return has(pc.col) })
		}
		if !ok {
			out = append(out, fieldNames[f])
		}
	}
	return out
}

// registryOf turns ListPurposes' answer into the rules Decide applies.
func registryOf(ps []*pb.Purpose) (*consent.Registry, error) {
	list := make([]consent.Purpose, len(ps))
	for i, p := range ps {
		list[i] = consent.Purpose{Name: p.GetName(), Description: p.GetDescription(),
			ReconfirmMonths: int(p.GetReconfirmMonths()), ThirdPartyAllowed: p.GetThirdPartyAllowed(),
			RetentionMonths: int(p.GetRetentionMonths())}
	}
	reg, err := consent.NewRegistry(list)
	if err != nil {
		return nil, fmt.Errorf("consentd's purpose registry: %w", err)
	}
	return reg, nil
}

// pipeline reads batches in one goroutine, sends up to --in-flight of them
// at once and writes their outcomes in input order. Every goroutine ends
// before it returns.
func (imp *job) pipeline(parent context.Context, rw *reportWriter) error {
	g, ctx := errgroup.WithContext(parent)
	pending := make(chan *batch, imp.cfg.InFlight) // in input order
	work := make(chan *batch)
	g.Go(func() error {
		defer close(work)
		defer close(pending)
		return imp.readBatches(ctx, func(b *batch) error {
			for _, ch := range []chan<- *batch{pending, work} {
				select {
				case ch <- b:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			return nil
		})
	})
	for range imp.cfg.InFlight {
		g.Go(func() error {
			for b := range work {
				b.err = imp.process(ctx, b)
				close(b.done)
			}
			return nil
		})
	}
	g.Go(func() error {
		for b := range pending {
			select {
			case <-b.done:
			case <-ctx.Done():
				return ctx.Err()
			}
			if b.err != nil {
				return b.err
			}
			if err := rw.add(b); err != nil {
				return err
			}
			imp.rowsDone.Add(int64(len(b.rows)))
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		return err
	}
	return parent.Err() // an interrupt that ended the reader
}

// readBatches parses the input into batches of --batch rows and hands each
// to send.
func (imp *job) readBatches(ctx context.Context, send func(*batch) error) error {
	newBatch := func() *batch {
		return &batch{rows: make([]row, 0, imp.cfg.Batch), done: make(chan struct{})}
	}
	b := newBatch()
	var raw [numFields]string
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		rec, err := imp.input.read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("%s: %w", imp.cfg.File, err)
		}
		for _, r := range imp.rows(&rec, &raw) {
			b.rows = append(b.rows, r)
			if len(b.rows) == imp.cfg.Batch {
				if err := send(b); err != nil {
					return err
				}
				b = newBatch()
			}
		}
	}
	if len(b.rows) > 0 {
		return send(b)
	}
	return nil
}

// rows turns one input record into its (contact, purpose) rows, each parsed
// and, when malformed, rejected with the reason.
func (imp *job) rows(rec *record, raw *[numFields]string) []row {
	l := imp.layout
	if rec.bad != "" {
		// Each (contact, purpose) the record would have held is rejected.
		bad := &shared{reject: rec.bad}
		n := max(len(l.purposes), 1)
		out := make([]row, n)
		for i := range out {
			out[i] = row{line: rec.line, reject: rec.bad, shared: bad}
			if i < len(l.purposes) {
				out[i].purpose = l.purposes[i].purpose
			}
		}
		return out
	}
	cell := func(i int) string {
		if i < 0 || i >= len(rec.cells) {
			return ""
		}
		return rec.cells[i]
	}
	for f := range numFields {
		raw[f] = cell(l.field[f])
	}
	s := parseShared(raw, imp.now, imp.ids)
	contactBad := strings.HasPrefix(s.reject, "contact:")
	if l.purposes != nil {
		out := make([]row, len(l.purposes))
		for i, pc := range l.purposes {
			r := row{line: rec.line, purpose: pc.purpose, shared: s}
			var statusErr string
			r.status, statusErr = parseStatus(fStatus, cell(pc.col))
			if statusErr != "" {
				statusErr = strings.Replace(statusErr, "status:", pc.purpose+":", 1)
			}
			r.reject = firstOf(ifStr(contactBad, s.reject), statusErr, s.reject)
			imp.checkWritable(&r)
			out[i] = r
		}
		return out
	}
	r := row{line: rec.line, purpose: strings.TrimSpace(raw[fPurpose]), shared: s}
	var purposeErr, statusErr string
	if _, ok := imp.reg.Lookup(r.purpose); !ok {
		purposeErr = fmt.Sprintf("purpose: unknown purpose %q", raw[fPurpose])
		if r.purpose == "" {
			purposeErr = "purpose: missing"
		}
	}
	r.status, statusErr = parseStatus(fStatus, raw[fStatus])
	r.reject = firstOf(ifStr(contactBad, s.reject), purposeErr, statusErr, s.reject)
	imp.checkWritable(&r)
	return []row{r}
}

// checkWritable rejects a row that would be imported but that consentd
// would refuse: a third-party yes without the third party's name, for a
// purpose that accepts third-party consent.
func (imp *job) checkWritable(r *row) {
	if r.reject != "" || r.status != consent.ClaimGranted || r.thirdParty != "" {
		return
	}
	if proof := r.proof(); !proof.FromThirdParty() {
		return
	}
	if p, _ := imp.reg.Lookup(r.purpose); p != nil && p.ThirdPartyAllowed {
		r.reject = "third_party: must name the third party when source is third_party"
	}
}

func ifStr(ok bool, s string) string {
	if ok {
		return s
	}
	return ""
}

func firstOf(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// process decides every row of b and, unless --dry-run, writes the valid
// and withdrawn ones.
func (imp *job) process(ctx context.Context, b *batch) error {
	b.out = make([]outcome, len(b.rows))
	byPurpose := map[string][]int{}
	for i := range b.rows {
		r := &b.rows[i]
		if r.reject != "" {
			b.out[i] = outRejected
			continue
		}
		p, _ := imp.reg.Lookup(r.purpose)
		b.out[i] = r.classify(p, imp.now)
		byPurpose[r.purpose] = append(byPurpose[r.purpose], i)
	}
	// A contact erased here before is suppressed, whatever the file says.
	// Read from the store, not a cache: with sidecars sharing Redis, an
	// erasure made through another one a moment ago must count.
	for purpose, idx := range byPurpose {
		contacts := make([]string, len(idx))
		for j, i := range idx {
			contacts[j] = b.rows[i].key
		}
		var (
			ds    []consent.Decision
			salts [][]byte
		)
		err := retry(ctx, func() (err error) {
			ds, salts, err = imp.client.BatchCheckSalted(ctx, purpose, contacts, client.FullyConsistent())
			return err
		})
		if err != nil {
			return err
		}
		for j, d := range ds {
			if d.Reason == consent.ReasonErased {
				b.out[idx[j]] = outSuppressed
			}
			b.rows[idx[j]].salt = salts[j]
		}
	}
	if imp.cfg.DryRun {
		return nil
	}
	var (
		writes []*pb.BatchWrite
		idx    []int
	)
	for i, o := range b.out {
		if o == outValid || o == outWithdrawn {
			writes = append(writes, b.rows[i].write(o, imp.cfg.Actor))
			idx = append(idx, i)
		}
	}
	for len(writes) > 0 {
		var results []*pb.WriteResult
		err := retry(ctx, func() (err error) {
			results, err = imp.client.WriteBatch(ctx, writes)
			return err
		})
		if err != nil {
			return err
		}
		// Writes that failed for a passing reason (consentd lost its store
		// for a moment) are sent again; their request ids make that safe.
		var again []*pb.BatchWrite
		var againIdx []int
		for j, res := range results {
			i := idx[j]
			switch codes.Code(res.GetCode()) {
			case codes.OK:
				if b.out[i] == outValid {
					b.grants++
				} else {
					b.withdrawals++
				}
			case codes.FailedPrecondition:
				b.out[i] = outSuppressed // erased since BatchCheck
			case codes.Unavailable:
				again, againIdx = append(again, writes[j]), append(againIdx, i)
			default:
				r := &b.rows[i]
				return fmt.Errorf("%s line %d (%s): consentd refused the write: %s", imp.cfg.File, r.line, r.purpose, res.GetMessage())
			}
		}
		if len(again) > 0 {
			if err := pause(ctx, time.Second); err != nil {
				return err
			}
		}
		writes, idx = again, againIdx
	}
	return nil
}

// retry calls f until it succeeds, fails for good, or fails three times
// with consentd unavailable or slow (the client has already retried
// UNAVAILABLE quickly; this rides out a restart or a Redis failover).
func retry(ctx context.Context, f func() error) error {
	wait := 500 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := f()
		var ce *client.Error
		if err == nil || attempt == 3 || !errors.As(err, &ce) ||
			(ce.Code != codes.Unavailable && ce.Code != codes.DeadlineExceeded) {
			return err
		}
		if err := pause(ctx, wait); err != nil {
			return err
		}
		wait *= 2
	}
}

func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// countingReader counts the bytes read through it, for progress.
type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}
