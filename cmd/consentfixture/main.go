// Command consentfixture writes a generated CRM export for trying and testing
// `consentctl import`: every outcome of every purpose (valid, withdrawn,
// suppressed, each re-permission reason) and every kind of malformed row,
// with dates relative to now.
//
//	consentfixture [--rows N] [--seed S] [--format csv|ndjson] [--erase FILE] > crm.csv
//
// The suppressed rows name contacts that must be erased in consentd before
// the import; --erase writes them to FILE, one a line. The same seed gives
// the same rows, outcomes and counts on any day (the dates are relative to
// today), and the same file all day long.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/consentd/consentd/internal/importfixture"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, time.Now())
	stop()
	os.Exit(code)
}

// run is consentfixture with its arguments and outputs; it returns the exit
// status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, now time.Time) int {
	fs := flag.NewFlagSet("consentfixture", flag.ContinueOnError)
	fs.SetOutput(stderr)
	rows := fs.Int("rows", 10000, "data rows to write (at least 1000)")
	seed := fs.Int64("seed", 1, "the same seed gives the same file")
	format := fs.String("format", "csv", "csv or ndjson")
	erase := fs.String("erase", "", "write the contacts to erase before the import to this file, one a line")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "consentfixture: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if err := ctx.Err(); err != nil {
		return 2
	}
	w := bufio.NewWriterSize(stdout, 256<<10)
	exp, err := importfixture.Generate(w, importfixture.Options{Rows: *rows, Seed: *seed, Now: now, Format: *format})
	if err == nil {
		err = w.Flush()
	}
	if err == nil && *erase != "" {
		err = writeLines(*erase, exp.Erase)
	}
	if err != nil {
		fmt.Fprintf(stderr, "consentfixture: %v\n", err)
		return 2
	}
	return 0
}

func writeLines(path string, lines []string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	for _, l := range lines {
		fmt.Fprintln(w, l)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
