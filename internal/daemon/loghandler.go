package daemon

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"unicode/utf8"
)

// maxLogLine bounds every line consentd logs, in bytes with its newline.
// Whatever a caller sends and whichever path logs it, one request can cost
// at most a line this long: a flood of 4 MB requests is not a flood of 4 MB
// lines.
const maxLogLine = 1 << 10

// newLogHandler returns consentd's log handler: lines of format ("text" or
// "json") at level to w, each cut to maxLogLine bytes.
func newLogHandler(w io.Writer, format string, level slog.Leveler) slog.Handler {
	s := &lineSink{out: w, max: maxLogLine}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewTextHandler(&s.buf, opts)
	if format == "json" {
		h = slog.NewJSONHandler(&s.buf, opts)
	}
	return &cappedHandler{inner: h, bare: h, sink: s}
}

// cappedHandler formats each record with inner into its sink's buffer and
// writes it out if it fits. If not, it formats it again with every value
// cut shorter (strings, and on later passes anything else as text, with a
// marker saying how long it was), then with fewer values, and as a last
// resort writes the time, level and message only, with bare: the handler
// without the attributes and groups of WithAttrs and WithGroup.
type cappedHandler struct {
	inner, bare slog.Handler
	sink        *lineSink
}

// lineSink is where the handlers of one logger format their lines (one at
// a time: the built-in handlers write a record in one Write) before they
// go out whole.
type lineSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
	out io.Writer
	max int
}

// valueLimits are the longest values of each pass, in bytes: a few long
// values fit in a line at the first; many, or values that grow when
// escaped, at the later ones.
func (s *lineSink) valueLimits() [3]int { return [3]int{s.max / 2, s.max / 8, s.max / 32} }

func (h *cappedHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h *cappedHandler) Handle(ctx context.Context, r slog.Record) error {
	s := h.sink
	s.mu.Lock()
	defer s.mu.Unlock()
	limits := s.valueLimits()
	for pass, limit := range limits {
		if fits, err := s.format(ctx, h.inner, cutRecord(r, limit, pass > 0, r.NumAttrs())); fits || err != nil {
			return err
		}
	}
	// Too many values: the first ones (a call's method, code and caller),
	// as many as fit, saying how many there were.
	for keep := r.NumAttrs() / 2; keep > 0; keep /= 2 {
		c := cutRecord(r, limits[len(limits)-1], true, keep)
		c.AddAttrs(slog.Int("attrs_cut", r.NumAttrs()-keep))
		if fits, err := s.format(ctx, h.inner, c); fits || err != nil {
			return err
		}
	}
	short := slog.NewRecord(r.Time, r.Level, cut(r.Message, s.max/8), r.PC)
	short.AddAttrs(slog.Int("attrs_cut", r.NumAttrs()))
	_, err := s.format(ctx, h.bare, short)
	return err
}

// format formats r with h and writes the line out if it fits.
func (s *lineSink) format(ctx context.Context, h slog.Handler, r slog.Record) (fits bool, err error) {
	s.buf.Reset()
	if err := h.Handle(ctx, r); err != nil {
		return false, err
	}
	if s.buf.Len() > s.max {
		return false, nil
	}
	_, err = s.out.Write(s.buf.Bytes())
	return true, err
}

func (h *cappedHandler) WithAttrs(as []slog.Attr) slog.Handler {
	cs := make([]slog.Attr, len(as))
	for i, a := range as {
		cs[i] = cutAttr(a, h.sink.max/8, true)
	}
	return &cappedHandler{inner: h.inner.WithAttrs(cs), bare: h.bare, sink: h.sink}
}

func (h *cappedHandler) WithGroup(name string) slog.Handler {
	return &cappedHandler{inner: h.inner.WithGroup(cut(name, h.sink.max/8)), bare: h.bare, sink: h.sink}
}

// cutRecord is r with its message and its first keep values cut to limit
// bytes; text turns values that are neither strings nor numbers into their
// text first, so they can be cut too.
func cutRecord(r slog.Record, limit int, text bool, keep int) slog.Record {
	c := slog.NewRecord(r.Time, r.Level, cut(r.Message, limit), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		if keep == 0 {
			return false
		}
		keep--
		c.AddAttrs(cutAttr(a, limit, text))
		return true
	})
	return c
}

func cutAttr(a slog.Attr, limit int, text bool) slog.Attr {
	a.Key = cut(a.Key, limit)
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		v = slog.StringValue(cut(v.String(), limit))
	case slog.KindGroup:
		g := v.Group()
		cs := make([]slog.Attr, len(g))
		for i, ga := range g {
			cs[i] = cutAttr(ga, limit, text)
		}
		v = slog.GroupValue(cs...)
	case slog.KindAny:
		if err, ok := v.Any().(error); ok {
			v = slog.StringValue(cut(err.Error(), limit))
		} else if text {
			v = slog.StringValue(cut(fmt.Sprint(v.Any()), limit))
		}
	}
	a.Value = v
	return a
}

// cut returns s if it is at most limit bytes, else its start, on a rune
// boundary, and a marker with its length, limit bytes in all.
func cut(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	mark := fmt.Sprintf("…[cut: %d bytes]", len(s))
	n := max(limit-len(mark), 0)
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + mark
}
