package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc/codes"

	"github.com/consentd/consentd/client"
	"github.com/consentd/consentd/consent"
	pb "github.com/consentd/consentd/proto/consent/v1"
)

const (
	defaultImportBatch    = 5000
	defaultImportInFlight = 4
	defaultImportActor    = "consentctl import"
)

// importConfig is what an import runs with: the flags, and what tests
// replace (the clock, the terminal test, the progress interval).
type importConfig struct {
	file     string
	format   string // csv or ndjson
	out      string
	mapping  *mapping
	dryRun   bool
	batch    int
	inFlight int
	actor    string

	stdin    io.Reader
	stderr   io.Writer
	terminal bool
	now      func() time.Time
	// every is how often a plain progress line is written when stderr is
	// not a terminal (the bar is redrawn more often).
	every time.Duration
}

func setupImport(fs *flag.FlagSet) runner {
	format := fs.String("format", "", "the input's `FORMAT`, csv or ndjson (default: from the file's extension, .ndjson or .jsonl for ndjson, else csv)")
	var maps mapFlags
	fs.Var(&maps, "map", "`FIELD=COLUMN`: take FIELD from the column named COLUMN (repeatable); FIELD is one of "+strings.Join(fieldNames[:], ", "))
	mappingFile := fs.String("mapping", "", "a JSON mapping `FILE`: {\"fields\": {FIELD: COLUMN}, \"purpose_columns\": {PURPOSE: COLUMN}}")
	out := fs.String("out", "", "the `DIR` the report goes to (default FILE.report, import.report for stdin)")
	dryRun := fs.Bool("dry-run", false, "classify and write the report, import nothing")
	batch := fs.Int("batch", defaultImportBatch, fmt.Sprintf("(contact, purpose) rows per call, `N` at most %d", consent.MaxBatch))
	inFlight := fs.Int("in-flight", defaultImportInFlight, "how many batches are sent at once, `N`")
	actor := fs.String("actor", "", "who records the writes, a `NAME` kept with every event (default $"+actorEnv+", else \""+defaultImportActor+"\"); keep it for a re-run, whose requests must be the same")
	return func(ctx context.Context, c *call, args []string) (int, error) {
		cfg := importConfig{file: args[0], format: *format, out: *out, dryRun: *dryRun,
			batch: *batch, inFlight: *inFlight, actor: *actor,
			stdin: os.Stdin, stderr: c.stderr, terminal: isTerminal(c.stderr), now: time.Now, every: 5 * time.Second}
		switch {
		case cfg.batch < 1 || cfg.batch > consent.MaxBatch:
			return exitError, fmt.Errorf("--batch must be between 1 and %d, got %d", consent.MaxBatch, cfg.batch)
		case cfg.inFlight < 1:
			return exitError, fmt.Errorf("--in-flight must be at least 1, got %d", cfg.inFlight)
		}
		if cfg.actor == "" {
			cfg.actor = c.env(actorEnv)
		}
		if cfg.actor == "" {
			cfg.actor = defaultImportActor
		}
		if err := consent.CheckLabel("--actor", cfg.actor); err != nil {
			return exitError, err
		}
		switch cfg.format {
		case "":
			cfg.format = "csv"
			if ext := strings.ToLower(filepath.Ext(cfg.file)); ext == ".ndjson" || ext == ".jsonl" {
				cfg.format = "ndjson"
			}
		case "csv", "ndjson":
		default:
			return exitError, fmt.Errorf("--format: unknown format %q (known: csv, ndjson)", cfg.format)
		}
		if cfg.out == "" {
			cfg.out = cfg.file + ".report"
			if cfg.file == "-" {
				cfg.out = "import.report"
			}
		}
		m, err := newMapping(*mappingFile, maps)
		if err != nil {
			return exitError, err
		}
		cfg.mapping = m
		rep, err := runImport(ctx, c.client, &cfg)
		if err != nil {
			var ce *client.Error
			if errors.Is(err, context.Canceled) || (errors.As(err, &ce) && ce.Code == codes.Canceled) {
				err = errors.New("interrupted: run the same command again to finish the import (nothing is applied twice)")
			}
			return exitError, err
		}
		if c.out.json {
			_, err = c.out.w.Write(rep.json)
		} else {
			_, err = c.out.w.Write(rep.text)
		}
		if err != nil {
			return exitError, err
		}
		return exitOK, nil
	}
}

// isTerminal reports whether w is a terminal, where progress is a bar
// redrawn in place.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// importBatch is a run of consecutive (contact, purpose) rows sent together.
type importBatch struct {
	rows []row
	out  []outcome
	// grants and withdrawals count the writes consentd applied.
	grants, withdrawals int
	err                 error
	done                chan struct{}
}

// importer is one run of import.
type importer struct {
	cfg      *importConfig
	client   *client.Client
	reg      *consent.Registry
	now      time.Time
	layout   *layout
	input    recordReader
	read     atomic.Int64 // bytes of the input read
	rowsDone atomic.Int64 // rows whose outcome is written
}

// runImport imports cfg.file and writes its report, which it returns.
func runImport(ctx context.Context, c *client.Client, cfg *importConfig) (*importReport, error) {
	start := cfg.now()
	// The file first: a missing one is the operator's to fix before
	// consentd matters.
	var (
		in   io.Reader = cfg.stdin
		size int64     = -1
	)
	if cfg.file != "-" {
		f, err := os.Open(cfg.file)
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
	imp := &importer{cfg: cfg, client: c, reg: reg, now: start}
	in = &countingReader{r: in, n: &imp.read}
	switch cfg.format {
	case "ndjson":
		nd := newNDJSONInput(in)
		imp.layout, err = cfg.mapping.resolve(reg, nd.column)
		imp.input = nd
	default:
		var cv *csvInput
		if cv, err = newCSVInput(in); err != nil {
			return nil, fmt.Errorf("%s: %w", cfg.file, err)
		}
		imp.layout, err = cfg.mapping.resolve(reg, cv.column)
		imp.input = cv
	}
	if err != nil {
		return nil, err
	}
	rw, err := newReportWriter(cfg.out, reg)
	if err != nil {
		return nil, err
	}
	defer rw.close()
	prog := startProgress(cfg, size, &imp.read, &imp.rowsDone)
	if err := imp.pipeline(ctx, rw); err != nil {
		prog.stop(false)
		return nil, err
	}
	elapsed := cfg.now().Sub(start)
	prog.stop(true)
	return rw.finish(cfg, elapsed)
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
func (imp *importer) pipeline(parent context.Context, rw *reportWriter) error {
	g, ctx := errgroup.WithContext(parent)
	pending := make(chan *importBatch, imp.cfg.inFlight) // in input order
	work := make(chan *importBatch)
	g.Go(func() error {
		defer close(work)
		defer close(pending)
		return imp.readBatches(ctx, func(b *importBatch) error {
			for _, ch := range []chan<- *importBatch{pending, work} {
				select {
				case ch <- b:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			return nil
		})
	})
	for range imp.cfg.inFlight {
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
func (imp *importer) readBatches(ctx context.Context, send func(*importBatch) error) error {
	newBatch := func() *importBatch {
		return &importBatch{rows: make([]row, 0, imp.cfg.batch), done: make(chan struct{})}
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
			return fmt.Errorf("%s: %w", imp.cfg.file, err)
		}
		for _, r := range imp.rows(&rec, &raw) {
			b.rows = append(b.rows, r)
			if len(b.rows) == imp.cfg.batch {
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
func (imp *importer) rows(rec *record, raw *[numFields]string) []row {
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
	s := parseShared(raw, imp.now)
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
func (imp *importer) checkWritable(r *row) {
	if r.reject != "" || r.status != statusGranted || r.source != consent.SourceThirdParty || r.thirdParty != "" {
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
func (imp *importer) process(ctx context.Context, b *importBatch) error {
	b.out = make([]outcome, len(b.rows))
	byPurpose := map[string][]int{}
	for i := range b.rows {
		r := &b.rows[i]
		if r.reject != "" {
			b.out[i] = outRejected
			continue
		}
		p, _ := imp.reg.Lookup(r.purpose)
		b.out[i] = classify(r, p, imp.now)
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
	if imp.cfg.dryRun {
		return nil
	}
	var (
		writes []*pb.BatchWrite
		idx    []int
	)
	for i, o := range b.out {
		if o == outValid || o == outWithdrawn {
			writes = append(writes, b.rows[i].write(o, imp.cfg.actor))
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
				return fmt.Errorf("%s line %d (%s): consentd refused the write: %s", imp.cfg.file, r.line, r.purpose, res.GetMessage())
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
