package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/consentd/consentd/consent"
	pb "github.com/consentd/consentd/proto/consent/v1"
)

// printer writes a command's result: tables and sentences for people, JSON
// for scripts.
type printer struct {
	w    io.Writer
	json bool
}

func (p *printer) linef(format string, a ...any) error {
	_, err := fmt.Fprintf(p.w, format+"\n", a...)
	return err
}

// table writes rows under header, columns aligned; empty cells must already
// be "-".
func (p *printer) table(header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(p.w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

func (p *printer) jsonValue(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return p.rawJSON(b)
}

// protoJSON writes m as protojson (the field names and enum names grpcurl
// shows), every field present so scripts see a stable shape.
func (p *printer) protoJSON(m proto.Message) error {
	b, err := marshalProto(m)
	if err != nil {
		return err
	}
	return p.rawJSON(b)
}

// eventsJSON writes {"events": [...]}, each event as protojson.
func (p *printer) eventsJSON(events []*pb.Event) error {
	var b bytes.Buffer
	b.WriteString(`{"events":[`)
	for i, e := range events {
		if i > 0 {
			b.WriteByte(',')
		}
		m, err := marshalProto(e)
		if err != nil {
			return err
		}
		b.Write(m)
	}
	b.WriteString(`]}`)
	return p.rawJSON(b.Bytes())
}

func marshalProto(m proto.Message) ([]byte, error) {
	return protojson.MarshalOptions{EmitUnpopulated: true}.Marshal(m)
}

// rawJSON indents b. protojson varies its whitespace on purpose; re-indenting
// makes the output the same on every run.
func (p *printer) rawJSON(b []byte) error {
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return err
	}
	out.WriteByte('\n')
	_, err := p.w.Write(out.Bytes())
	return err
}

// Names on the command line and in tables: the wire's enum names without
// their prefix, in lower case ("checkbox", "double_opt_in", "first_party").

func enumName(full, prefix string) string {
	return strings.ToLower(strings.TrimPrefix(full, prefix))
}

// methodNames lists the methods, in the proto's order: for a grant the
// affirmative ones, for a withdrawal every one.
func methodNames(grant bool) []string {
	vals := pb.Method(0).Descriptor().Values()
	var names []string
	for i := range vals.Len() {
		v := vals.Get(i)
		if m := consent.Method(v.Number()); m.Valid() && (!grant || m.Affirmative()) {
			names = append(names, enumName(string(v.Name()), "METHOD_"))
		}
	}
	return names
}

// parseMethod reads --method; grant says whether it must be a way to say yes.
func parseMethod(s string, grant bool) (pb.Method, error) {
	known := strings.Join(methodNames(grant), ", ")
	v, ok := pb.Method_value["METHOD_"+strings.ToUpper(strings.ReplaceAll(s, "-", "_"))]
	m := consent.Method(v)
	switch {
	case !ok || !m.Valid():
		return 0, fmt.Errorf("--method: unknown method %q (known: %s)", s, known)
	case grant && !m.Affirmative():
		return 0, fmt.Errorf("--method: %s records a no, never a yes (known: %s)", s, known)
	}
	return pb.Method(v), nil
}

func methodName(m pb.Method) string {
	if m == pb.Method_METHOD_UNSPECIFIED {
		return "-"
	}
	return enumName(m.String(), "METHOD_")
}

func methodText(m pb.Method, bundled bool) string {
	if bundled {
		return methodName(m) + " (bundled)"
	}
	return methodName(m)
}

// parseSource reads --source; empty leaves it to consentd (first party,
// unless a third party is named).
func parseSource(s string) (pb.Source, error) {
	switch strings.ReplaceAll(s, "-", "_") {
	case "":
		return pb.Source_SOURCE_UNSPECIFIED, nil
	case "first_party":
		return pb.Source_SOURCE_FIRST_PARTY, nil
	case "third_party":
		return pb.Source_SOURCE_THIRD_PARTY, nil
	}
	return 0, fmt.Errorf("--source: unknown source %q (known: first_party, third_party)", s)
}

func sourceText(s pb.Source, thirdParty string) string {
	switch {
	case s == pb.Source_SOURCE_THIRD_PARTY || thirdParty != "":
		if thirdParty == "" {
			return "third party"
		}
		return "third party (" + thirdParty + ")"
	case s == pb.Source_SOURCE_FIRST_PARTY:
		return "first party"
	case s == pb.Source_SOURCE_UNSPECIFIED:
		return "-" // withdrawals and erasures have no source
	}
	return enumName(s.String(), "SOURCE_")
}

func kindName(k pb.EventKind) string { return enumName(k.String(), "EVENT_KIND_") }

func decisionWord(allowed bool) string {
	if allowed {
		return "allow"
	}
	return "deny"
}

func decisionPB(allowed bool) pb.Decision {
	if allowed {
		return pb.Decision_DECISION_ALLOW
	}
	return pb.Decision_DECISION_DENY
}

// parseTime reads a date flag: YYYY-MM-DD (midnight UTC) or RFC 3339. Empty
// is no time.
func parseTime(flagName, s string) (*timestamppb.Timestamp, error) {
	if s == "" {
		return nil, nil
	}
	for _, layout := range []string{time.RFC3339Nano, time.DateOnly} {
		if t, err := time.Parse(layout, s); err == nil {
			return timestamppb.New(t), nil
		}
	}
	return nil, fmt.Errorf("--%s: %q is not a date: want YYYY-MM-DD or an RFC 3339 time like 2026-05-01T10:00:00Z", flagName, s)
}

// when prints a time in UTC to the second, or "-".
func when(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return "-"
	}
	return ts.AsTime().UTC().Format(time.RFC3339)
}

func text(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
