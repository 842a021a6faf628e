package daemon

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// TestLogHandlerCapsLines: whatever a record holds, consentd's handler
// writes one line of at most maxLogLine bytes, in either format; a line
// that fits is written as the plain handler writes it, and a cut value says
// how long it was.
func TestLogHandlerCapsLines(t *testing.T) {
	huge := strings.Repeat("x", 4<<20)
	many := make([]any, 0, 400)
	for i := range 200 {
		many = append(many, fmt.Sprintf("attr%03d", i), strings.Repeat("v", 100))
	}
	for _, tc := range []struct {
		name     string
		log      func(*slog.Logger)
		wantText []string // in the text line
	}{
		{"short line as is", func(l *slog.Logger) {
			l.Warn("rpc", "method", "/consent.v1.CheckService/Check", "code", "InvalidArgument")
		},
			[]string{`level=WARN msg=rpc method=/consent.v1.CheckService/Check code=InvalidArgument`}},
		{"4 MB value", func(l *slog.Logger) { l.Warn("rpc", "method", "Check", "error", huge) },
			[]string{`method=Check error="xxx`, `…[cut: 4194304 bytes]"`}},
		{"4 MB message", func(l *slog.Logger) { l.Info(huge, "k", "v") }, []string{`…[cut: 4194304 bytes]`, "k=v"}},
		{"4 MB error", func(l *slog.Logger) { l.Error("stopped", "error", errors.New(huge)) }, []string{`msg=stopped error="xxx`, `[cut: 4194304 bytes]`}},
		{"4 MB of other kinds", func(l *slog.Logger) { l.Info("list", "contacts", []string{huge, huge}) }, []string{`msg=list contacts="[xxx`}},
		{"values that grow when escaped", func(l *slog.Logger) {
			l.Warn("escapes", "a", strings.Repeat("\x01", 600), "b", strings.Repeat("\"", 600))
		}, []string{`msg=escapes a="\x01`}},
		{"many attributes", func(l *slog.Logger) { l.Warn("many", many...) }, []string{`msg=many attr000="vvv`, `attrs_cut=`}},
		{"many attributes and long ones with them", func(l *slog.Logger) {
			l.With(many...).Warn("many", many...)
		}, []string{`msg=many attrs_cut=200`}},
		{"WithAttrs and groups", func(l *slog.Logger) {
			l.With("component", huge).WithGroup("g").Warn("grouped", slog.Group("inner", "v", huge))
		}, []string{`component="xxx`, `g.inner.v="xxx`}},
		{"cut on a rune boundary", func(l *slog.Logger) { l.Warn("runes", "v", strings.Repeat("ü", 1000)) }, []string{`v="üü`, `[cut: 2000 bytes]`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, format := range []string{"text", "json"} {
				var out bytes.Buffer
				tc.log(slog.New(newLogHandler(&out, format, slog.LevelDebug)))
				line := out.String()
				if strings.Count(line, "\n") != 1 || !strings.HasSuffix(line, "\n") {
					t.Fatalf("%s: want one line, got %q", format, line)
				}
				if len(line) > maxLogLine {
					t.Errorf("%s: line of %d bytes, want at most %d: %.300q…", format, len(line), maxLogLine, line)
				}
				switch format {
				case "json":
					if !json.Valid([]byte(line)) {
						t.Errorf("json: not JSON: %q", line)
					}
				case "text":
					for _, want := range tc.wantText {
						if !strings.Contains(line, want) {
							t.Errorf("text: line %q lacks %q", line, want)
						}
					}
				}
			}
		})
	}
}

// TestLogHandlerShortLinesUnchanged: a line within the cap is exactly what
// slog's own handler writes.
func TestLogHandlerShortLinesUnchanged(t *testing.T) {
	for _, format := range []string{"text", "json"} {
		var got, want bytes.Buffer
		opts := &slog.HandlerOptions{Level: slog.LevelDebug}
		plain := slog.Handler(slog.NewTextHandler(&want, opts))
		if format == "json" {
			plain = slog.NewJSONHandler(&want, opts)
		}
		for _, l := range []*slog.Logger{slog.New(newLogHandler(&got, format, slog.LevelDebug)), slog.New(plain)} {
			l = l.With("store", "redis").WithGroup("g")
			l.Info("consentd serving", "addr", "127.0.0.1:7000", "purposes", 4, "err", errors.New("none"), slog.Group("sub", "x", 1.5))
			l.Debug("rpc", "elapsed", 12)
		}
		// The time differs; the rest must not.
		strip := func(s string) string {
			var out []string
			for line := range strings.Lines(s) {
				_, rest, _ := strings.Cut(line, "level")
				out = append(out, rest)
			}
			return strings.Join(out, "")
		}
		if strip(got.String()) != strip(want.String()) {
			t.Errorf("%s:\ngot  %s\nwant %s", format, got.String(), want.String())
		}
	}
}
