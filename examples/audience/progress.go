package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// ttyEvery is how often the progress line is rewritten on a terminal.
const ttyEvery = 250 * time.Millisecond

// progress reports, on stderr, how many contacts have been read and
// allowed: one line rewritten in place on a terminal, a plain line every
// so often otherwise (a log file gets no carriage returns).
type progress struct {
	read, allowed atomic.Uint64

	w       io.Writer
	tty     bool
	start   time.Time
	done    chan struct{}
	wg      sync.WaitGroup
	printed bool // set by the reporting goroutine; read after it has ended
}

// startProgress starts reporting to w every interval (ttyEvery on a
// terminal); an interval of 0 reports nothing. stop ends it.
func startProgress(w io.Writer, every time.Duration, start time.Time) *progress {
	p := &progress{w: w, tty: isTerminal(w), start: start, done: make(chan struct{})}
	if every > 0 && p.tty {
		every = ttyEvery
	}
	if every > 0 {
		p.wg.Go(func() { p.loop(every) })
	}
	return p
}

func (p *progress) loop(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-p.done:
			return
		case now := <-t.C:
			p.print(now)
		}
	}
}

func (p *progress) print(now time.Time) {
	read := p.read.Load()
	rate := 0.0
	if secs := now.Sub(p.start).Seconds(); secs > 0 {
		rate = float64(read) / secs
	}
	line := fmt.Sprintf("audience: %s read, %s allowed, %s/s", commas(read), commas(p.allowed.Load()), commas(uint64(rate)))
	if p.tty {
		fmt.Fprintf(p.w, "\r%s\x1b[K", line)
	} else {
		fmt.Fprintln(p.w, line)
	}
	p.printed = true
}

// stop ends the reporting and, on a terminal, clears the line for what
// follows.
func (p *progress) stop() {
	close(p.done)
	p.wg.Wait()
	if p.tty && p.printed {
		fmt.Fprint(p.w, "\r\x1b[K")
	}
}

// isTerminal reports whether w is a character device (a terminal; or
// /dev/null, where rewriting a line costs nothing).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
