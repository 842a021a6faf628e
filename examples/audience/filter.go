package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/consentd/consentd/client"
	"github.com/consentd/consentd/consent"
)

// connectTimeout bounds the health check before the audience is streamed:
// an unreachable consentd fails the run at once instead of hanging a stream
// (streams carry no deadline: an audience takes as long as it takes).
const connectTimeout = 10 * time.Second

// outputBuffer is the stdout buffer: allowed contacts are written in a few
// large writes, and flushed once at the end.
const outputBuffer = 64 << 10

// summary is what a complete run reports.
type summary struct {
	client.FilterSummary
	elapsed time.Duration
}

// filter streams stdin's contacts through consentd and writes the allowed
// ones to stdout. An error means the output is incomplete.
func filter(ctx context.Context, c config, stdin io.Reader, stdout, stderr io.Writer) (summary, error) {
	start := time.Now()
	cl, err := client.New(c.addr)
	if err != nil {
		return summary{}, fmt.Errorf("consentd address %q: %w", c.addr, err)
	}
	defer cl.Close()
	if err := healthy(ctx, cl, c.addr); err != nil {
		return summary{}, err
	}

	in := newContactReader(stdin, c.header)
	if err := in.start(); err != nil {
		return summary{}, err
	}
	buf := bufio.NewWriterSize(stdout, outputBuffer)
	out := csv.NewWriter(buf) // writes straight into buf: it is large enough
	if h, ok := in.headerCell(); ok {
		out.Write([]string{h}) // an error sticks in buf and is reported at Flush
	}

	// A malformed row cancels the stream: nothing after it is judged, and
	// the run fails.
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	in.onError = cancel
	prog := startProgress(stderr, c.progress, start)
	var (
		row      [1]string
		written  uint64
		writeErr error
	)
	sum, err := cl.Filter(fctx, c.purpose, in.contacts(&prog.read), func(contact string) error {
		row[0] = contact
		if writeErr = out.Write(row[:]); writeErr != nil {
			return writeErr
		}
		written++
		prog.allowed.Store(written)
		return nil
	})
	prog.stop()
	read := prog.read.Load()
	switch {
	case in.err != nil:
		return summary{}, fmt.Errorf("%v; stopped, the output is incomplete", in.err)
	case writeErr != nil:
		return summary{}, fmt.Errorf("writing stdout: %v; stopped after %d contacts, the output is incomplete", writeErr, read)
	case ctx.Err() != nil:
		return summary{}, fmt.Errorf("interrupted after %d contacts; the output is incomplete", read)
	case errors.Is(err, consent.ErrInvalid):
		return summary{}, err // the server names the field: "consentd: purpose: unknown purpose ..."
	case err != nil:
		return summary{}, fmt.Errorf("filtering through consentd at %s: %v; stopped after %d contacts, the output is incomplete", c.addr, err, read)
	}
	out.Flush()
	if err := out.Error(); err != nil {
		return summary{}, fmt.Errorf("writing stdout: %v; the output is incomplete", err)
	}
	// Every contact read must have been judged, and every allowed one
	// written: anything else is a partial answer.
	if sum.Total != read || sum.Allowed != written {
		return summary{}, fmt.Errorf("consentd judged %d of %d contacts and allowed %d, %d written; the output is incomplete", sum.Total, read, sum.Allowed, written)
	}
	return summary{FilterSummary: sum, elapsed: time.Since(start)}, nil
}

// healthy checks that consentd answers and serves, with a bounded wait.
func healthy(ctx context.Context, cl *client.Client, addr string) error {
	hctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	err := cl.Health(hctx)
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return errors.New("interrupted before any contact was read")
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("consentd at %s did not answer within %v", addr, connectTimeout)
	default:
		return fmt.Errorf("cannot use consentd at %s: %v", addr, err)
	}
}

// report writes the counts by reason to w.
func report(w io.Writer, s summary) {
	rate := 0.0
	if secs := s.elapsed.Seconds(); secs > 0 {
		rate = float64(s.Total) / secs
	}
	denied := s.Total - s.Allowed - s.Invalid
	fmt.Fprintf(w, "audience: %s contacts in %v (%s/s): %s allowed, %s denied, %s invalid\n",
		commas(s.Total), s.elapsed.Round(time.Millisecond), commas(uint64(rate)),
		commas(s.Allowed), commas(denied), commas(s.Invalid))
	type line struct {
		name  string
		count uint64
	}
	var lines []line
	for _, r := range consent.Reasons() {
		if n := s.Reasons[r]; n > 0 {
			lines = append(lines, line{r.String(), n})
		}
	}
	if s.Invalid > 0 {
		lines = append(lines, line{"invalid", s.Invalid})
	}
	nameW, countW := 0, 0
	for _, l := range lines {
		nameW = max(nameW, len(l.name))
		countW = max(countW, len(commas(l.count)))
	}
	var b strings.Builder
	for _, l := range lines {
		fmt.Fprintf(&b, "  %-*s  %*s\n", nameW, l.name, countW, commas(l.count))
	}
	io.WriteString(w, b.String())
}

// commas formats n with thousands separators: 1,000,000.
func commas(n uint64) string {
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
