// Command audience filters an ad audience through consentd: it reads
// contacts as CSV on stdin (the first column; other columns are ignored, a
// header row is optional), streams them through FilterAudience for one
// purpose, and writes the contacts that may be used, in input order and as
// they were given, as CSV on stdout. Progress and the counts by reason go to
// stderr.
//
//	audience --purpose ad_retargeting < contacts.csv > allowed.csv
//
// The audience is never held in memory: any size of input streams through.
// A contact consentd cannot judge (an empty cell, a control character, over
// 320 bytes) is counted as invalid and never written.
//
// Exit status: 0 when every contact was judged and the output is complete;
// 1 when the run failed (a malformed CSV row, an unknown purpose, consentd
// unreachable or failing, stdout not writable, an interrupt), with a one-line
// message on stderr, and the output must not be used; 2 for a bad command
// line.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	// The first interrupt stops the stream cleanly; a second one kills the
	// process even while it waits for stdin.
	context.AfterFunc(ctx, stop)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// defaultAddr is where consentd listens by default.
const defaultAddr = "127.0.0.1:50051"

// config is the command line.
type config struct {
	addr     string
	purpose  string
	header   headerMode
	progress time.Duration // between plain progress lines when stderr is not a terminal
}

// errFlags is a command-line error the flag package has already reported.
var errFlags = errors.New("bad flags")

func parseArgs(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	c := config{header: headerAuto}
	fs := flag.NewFlagSet("audience", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: audience --purpose PURPOSE [--addr ADDR] [--header auto|yes|no] < contacts.csv > allowed.csv\n\n"+
			"Writes the contacts of the CSV's first column that consentd allows for PURPOSE, in input order.\n\n")
		fs.PrintDefaults()
	}
	addr := getenv("CONSENTD_ADDR")
	if addr == "" {
		addr = defaultAddr
	}
	fs.StringVar(&c.addr, "addr", addr, "consentd address: host:port, or unix:PATH; $CONSENTD_ADDR sets the default")
	fs.StringVar(&c.purpose, "purpose", "", "the purpose to filter for, e.g. ad_retargeting (required)")
	fs.TextVar(&c.header, "header", headerAuto, "is the first row a header: auto (when its first cell has no '@' and no digit), yes or no")
	fs.DurationVar(&c.progress, "progress", 10*time.Second, "how often to print a progress line when stderr is not a terminal (a terminal gets one line, rewritten 4 times a second); 0 turns progress off")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return c, err
		}
		return c, errFlags
	}
	switch {
	case fs.NArg() > 0:
		return c, fmt.Errorf("unexpected arguments: %s (the contacts come on stdin)", strings.Join(fs.Args(), " "))
	case c.purpose == "":
		return c, errors.New("--purpose is required, e.g. --purpose ad_retargeting")
	case c.addr == "":
		return c, errors.New("--addr must not be empty")
	case c.progress < 0:
		return c, errors.New("--progress must not be negative")
	}
	return c, nil
}

// run is the whole command; it returns the exit status.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	c, err := parseArgs(args, getenv, stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errFlags):
		return 2
	case err != nil:
		fmt.Fprintf(stderr, "audience: %v\n", err)
		return 2
	}
	sum, err := filter(ctx, c, stdin, stdout, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "audience: %v\n", err)
		return 1
	}
	report(stderr, sum)
	return 0
}
