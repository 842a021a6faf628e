package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/consentd/consentd/client"
	"github.com/consentd/consentd/consent"
	"github.com/consentd/consentd/internal/importer"
)

// defaultImportActor records import's writes when neither --actor nor
// $CONSENTCTL_ACTOR names anyone.
const defaultImportActor = "consentctl import"

// mapFlags collects repeated --map FIELD=COLUMN flags.
type mapFlags []string

func (m *mapFlags) String() string     { return strings.Join(*m, ",") }
func (m *mapFlags) Set(s string) error { *m = append(*m, s); return nil }

func setupImport(fs *flag.FlagSet) runner {
	format := fs.String("format", "", "the input's `FORMAT`, csv or ndjson (default: from the file's extension, .ndjson or .jsonl for ndjson, else csv)")
	var maps mapFlags
	fs.Var(&maps, "map", "`FIELD=COLUMN`: take FIELD from the column named COLUMN (repeatable); FIELD is one of "+strings.Join(importer.FieldNames(), ", "))
	mappingFile := fs.String("mapping", "", "a JSON mapping `FILE`: {\"fields\": {FIELD: COLUMN}, \"purpose_columns\": {PURPOSE: COLUMN}}")
	out := fs.String("out", "", "the `DIR` the report goes to (default FILE.report, import.report for stdin)")
	dryRun := fs.Bool("dry-run", false, "classify and write the report, import nothing")
	batch := fs.Int("batch", importer.DefaultBatch, fmt.Sprintf("(contact, purpose) rows per call, `N` at most %d", consent.MaxBatch))
	inFlight := fs.Int("in-flight", importer.DefaultInFlight, "how many batches are sent at once, `N`")
	actor := fs.String("actor", "", "who records the writes, a `NAME` kept with every event (default $"+actorEnv+", else \""+defaultImportActor+"\"); keep it for a re-run, whose requests must be the same")
	region := fs.String("default-region", "", "the CLDR `REGION` (GB, US) phone numbers written without + and a country code are read in, as consentd's --default-region (default: such rows are rejected)")
	return func(ctx context.Context, c *call, args []string) (int, error) {
		cfg := importer.Config{File: args[0], Format: *format, Out: *out, DryRun: *dryRun,
			Batch: *batch, InFlight: *inFlight, Actor: *actor, DefaultRegion: *region,
			Stdin: os.Stdin, Progress: c.stderr, Terminal: isTerminal(c.stderr), Now: time.Now, Every: 5 * time.Second}
		if cfg.Actor == "" {
			cfg.Actor = c.env(actorEnv)
		}
		if cfg.Actor == "" {
			cfg.Actor = defaultImportActor
		}
		m, err := importer.NewMapping(*mappingFile, maps)
		if err != nil {
			return exitError, err
		}
		cfg.Mapping = m
		rep, err := importer.Run(ctx, c.client, cfg)
		if err != nil {
			var ce *client.Error
			if errors.Is(err, context.Canceled) || (errors.As(err, &ce) && ce.Code == codes.Canceled) {
				err = errors.New("interrupted: run the same command again to finish the import (nothing is applied twice)")
			}
			return exitError, err
		}
		if c.out.json {
			_, err = c.out.w.Write(rep.JSON)
		} else {
			_, err = c.out.w.Write(rep.Text)
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
