package importfixture

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/consentd/consentd/consent"
)

var testNow = time.Date(2026, 11, 28, 17, 0, 0, 0, time.UTC)

func generate(t *testing.T, o Options) (string, Expected) {
	t.Helper()
	var b bytes.Buffer
	exp, err := Generate(&b, o)
	if err != nil {
		t.Fatal(err)
	}
	return b.String(), exp
}

func TestDeterministic(t *testing.T) {
	for _, format := range []string{"csv", "ndjson"} {
		o := Options{Rows: 10000, Seed: 1, Now: testNow, Format: format}
		file1, exp1 := generate(t, o)
		file2, exp2 := generate(t, o)
		if file1 != file2 {
			t.Errorf("%s: two files from seed 1 differ", format)
		}
		if diff := cmp.Diff(exp1, exp2); diff != "" {
			t.Errorf("%s: two Expected from seed 1 differ (-first +second):\n%s", format, diff)
		}
		o.Seed = 2
		if file3, _ := generate(t, o); file3 == file1 {
			t.Errorf("%s: seeds 1 and 2 give the same file", format)
		}
	}
}

func TestOptionsRefused(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		want string
	}{
		{"too few rows", Options{Rows: 10, Now: testNow}, "Rows must be at least"},
		{"unknown format", Options{Rows: MinRows, Now: testNow, Format: "xlsx"}, `unknown format "xlsx"`},
		{"no now", Options{Rows: MinRows}, "Now must be set"},
	}
	for _, tt := range tests {
		_, err := Generate(io.Discard, tt.o)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want one containing %q", tt.name, err, tt.want)
		}
	}
}

// registries are the ones the fixture is checked against: consentd's
// built-in one, and one with a purpose that accepts third-party yeses and
// one without a window, which have no third_party and no stale rows.
func registries() map[string][]consent.Purpose {
	return map[string][]consent.Purpose{
		"default": consent.DefaultPurposes(),
		"custom": {
			{Name: "email_marketing", ReconfirmMonths: 24},
			{Name: "partner_offers", ReconfirmMonths: 6, ThirdPartyAllowed: true},
			{Name: "loyalty", ReconfirmMonths: 0},
			{Name: "sms", ReconfirmMonths: 3},
		},
	}
}

// TestEveryCategory checks that every outcome of every purpose, and every
// kind of reject, is in the file, and that the report adds up.
func TestEveryCategory(t *testing.T) {
	for name, ps := range registries() {
		t.Run(name, func(t *testing.T) {
			const rows = 10000
			_, exp := generate(t, Options{Rows: rows, Seed: 7, Now: testNow, Purposes: ps})
			if got := len(exp.Rows); got != rows {
				t.Errorf("%d rows, want %d", got, rows)
			}
			total := exp.Report.Rejected
			for _, p := range ps {
				c, ok := exp.Report.Purposes[p.Name]
				if !ok {
					t.Errorf("report lacks purpose %s", p.Name)
				}
				for _, o := range append([]string{Valid, Withdrawn, Suppressed}, RepermissionReasons()...) {
					n := c.Get(o)
					total += n
					absent := (o == ThirdParty && p.ThirdPartyAllowed) || (o == Stale && p.ReconfirmMonths == 0)
					switch {
					case absent && n != 0:
						t.Errorf("%s: %d %s rows, want none", p.Name, n, o)
					case !absent && n < 3:
						t.Errorf("%s: %d %s rows, want at least 3", p.Name, n, o)
					}
				}
			}
			if total != rows {
				t.Errorf("the report's counts add up to %d, want %d", total, rows)
			}
			fields := map[string]int{}
			for _, r := range exp.Rejects {
				fields[r.Field]++
			}
			for _, f := range []string{"contact", "purpose", "method", "captured_at", "last_engaged_at", ""} {
				if fields[f] < 3 {
					t.Errorf("%d rejects naming %q, want at least 3 (all: %v)", fields[f], f, fields)
				}
			}
			if len(exp.Erase) == 0 {
				t.Error("nothing to erase: no suppressed rows")
			}
			var grants, withdrawals int
			for _, c := range exp.Report.Purposes {
				grants += c.Valid
				withdrawals += c.Withdrawn
			}
			if got, want := exp.Report.Imported, (Imported{grants, withdrawals}); got != want {
				t.Errorf("imported = %+v, want %+v", got, want)
			}
		})
	}
}

// TestCSV parses the file as an importer would and checks each row against
// Expected: the line numbers, the contact and purpose as written, and the
// outcome a reference implementation of the import's rules reaches, at Now
// and 20 days later (no date sits near a window's edge).
func TestCSV(t *testing.T) {
	for name, ps := range registries() {
		t.Run(name, func(t *testing.T) {
			file, exp := generate(t, Options{Rows: 10000, Seed: 3, Now: testNow, Purposes: ps})
			cr := csv.NewReader(strings.NewReader(file))
			cr.FieldsPerRecord = -1
			header, err := cr.Read()
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(Columns(), header); diff != "" {
				t.Errorf("header (-want +got):\n%s", diff)
			}
			var recs [][]string
			var lines []int
			for {
				rec, err := cr.Read()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				line, _ := cr.FieldPos(0)
				recs = append(recs, rec)
				lines = append(lines, line)
			}
			checkRows(t, exp, ps, recs, lines)
			quoted := strings.Count(file, `"Acme Lists, Inc."`)
			if quoted == 0 {
				t.Error("no quoted field with a comma in the file")
			}
		})
	}
}

// TestNDJSON checks the NDJSON file of the same seed: the same rows, one
// object a line from line 1, each field a string; a row with the wrong
// field count is a line that is no JSON object.
func TestNDJSON(t *testing.T) {
	ps := consent.DefaultPurposes()
	o := Options{Rows: 10000, Seed: 3, Now: testNow}
	_, csvExp := generate(t, o)
	o.Format = "ndjson"
	file, exp := generate(t, o)
	var recs [][]string
	var lines []int
	sc := bufio.NewScanner(strings.NewReader(file))
	for n := 1; sc.Scan(); n++ {
		var obj map[string]string
		if err := json.Unmarshal(sc.Bytes(), &obj); err != nil {
			recs = append(recs, []string{"malformed"}) // the wrong field count of NDJSON
		} else {
			var rec []string
			for _, c := range Columns() {
				v, ok := obj[c]
				if !ok {
					t.Fatalf("line %d lacks %q: %s", n, c, sc.Text())
				}
				rec = append(rec, v)
			}
			if len(obj) != len(Columns()) {
				t.Fatalf("line %d has %d keys, want %d", n, len(obj), len(Columns()))
			}
			recs = append(recs, rec)
		}
		lines = append(lines, n)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	checkRows(t, exp, ps, recs, lines)
	// The same seed gives the same rows in the same order: NDJSON has no
	// header, so every line is one less.
	for i := range csvExp.Rows {
		csvExp.Rows[i].Line--
	}
	if diff := cmp.Diff(csvExp.Rows, exp.Rows); diff != "" {
		t.Errorf("NDJSON rows differ from CSV rows of the same seed (-csv +ndjson):\n%s", diff)
	}
	if diff := cmp.Diff(csvExp.Report, exp.Report); diff != "" {
		t.Errorf("NDJSON report differs from CSV (-csv +ndjson):\n%s", diff)
	}
}

// checkRows compares the parsed records (and the line each starts on) with
// exp, row by row, and checks exp's segments and rejects against the rows.
func checkRows(t *testing.T, exp Expected, ps []consent.Purpose, recs [][]string, lines []int) {
	t.Helper()
	if len(recs) != len(exp.Rows) {
		t.Fatalf("%d records, Expected has %d rows", len(recs), len(exp.Rows))
	}
	erased := map[string]bool{}
	for _, c := range exp.Erase {
		erased[c] = true
	}
	byName := map[string]consent.Purpose{}
	for _, p := range ps {
		byName[p.Name] = p
	}
	seen := map[[2]string]int{}
	segments := map[string][][]string{}
	var rejects []Reject
	for i, rec := range recs {
		want := exp.Rows[i]
		if lines[i] != want.Line {
			t.Fatalf("record %d starts on line %d, Expected says %d", i, lines[i], want.Line)
		}
		if len(rec) >= 2 && (rec[0] != want.Contact || rec[1] != want.Purpose) {
			t.Errorf("line %d: contact, purpose = %q, %q; Expected says %q, %q", want.Line, rec[0], rec[1], want.Contact, want.Purpose)
		}
		for _, at := range []time.Time{testNow, testNow.AddDate(0, 0, 20)} {
			outcome, field := classify(rec, erased, byName, at)
			if outcome != want.Outcome || field != want.Field {
				t.Errorf("line %d %q at %v: the rules give %s (%q), Expected says %s (%q)",
					want.Line, rec, at.Format(time.DateOnly), outcome, field, want.Outcome, want.Field)
			}
		}
		if want.Outcome == Rejected {
			rejects = append(rejects, Reject{want.Line, want.Field})
			if want.Field == "purpose" || want.Field == "contact" {
				if want.Check != consent.ReasonUnspecified {
					t.Errorf("line %d: an unknown purpose or a malformed contact cannot be checked, Expected says %v", want.Line, want.Check)
				}
				continue
			}
		}
		k := [2]string{normal(want.Contact), want.Purpose}
		if prev, dup := seen[k]; dup {
			t.Errorf("lines %d and %d are both %v", prev, want.Line, k)
		}
		seen[k] = want.Line
		if want.Check != checkAfter(want.Outcome) {
			t.Errorf("line %d: %s, Expected's check %v, want %v", want.Line, want.Outcome, want.Check, checkAfter(want.Outcome))
		}
		if slices.Contains(RepermissionReasons(), want.Outcome) {
			name := want.Purpose + "." + want.Outcome + ".csv"
			segments[name] = append(segments[name], []string{want.Contact, strconv.Itoa(want.Line)})
		}
	}
	if diff := cmp.Diff(rejects, exp.Rejects); diff != "" {
		t.Errorf("rejects (-rows +Expected):\n%s", diff)
	}
	got := map[string][][]string{}
	for name, content := range exp.Segments {
		recs, err := csv.NewReader(strings.NewReader(content)).ReadAll()
		if err != nil || len(recs) < 2 || !slices.Equal(recs[0], []string{"contact", "line"}) {
			t.Errorf("segment %s: %v, %q: want a header contact,line and a row at least", name, err, content)
			continue
		}
		got[name] = recs[1:]
	}
	if diff := cmp.Diff(segments, got); diff != "" {
		t.Errorf("segments (-rows +Expected):\n%s", diff)
	}
}

func checkAfter(outcome string) consent.Reason {
	switch outcome {
	case Valid:
		return consent.ReasonGranted
	case Withdrawn:
		return consent.ReasonWithdrawn
	case Suppressed:
		return consent.ReasonErased
	}
	return consent.ReasonNoConsent
}

func normal(contact string) string { return strings.ToLower(strings.TrimSpace(contact)) }

// classify is the import's rules written out independently of the
// generator, as the spec states them: the first of rejected, suppressed,
// withdrawn, the re-permission reasons in order, valid. For a reject it
// also returns the column at fault ("" for a wrong field count).
func classify(rec []string, erased map[string]bool, ps map[string]consent.Purpose, now time.Time) (outcome, field string) {
	if len(rec) != len(Columns()) {
		return Rejected, ""
	}
	f := map[string]string{}
	for i, c := range Columns() {
		f[c] = rec[i]
	}
	if !validContact(strings.TrimSpace(f["contact"])) {
		return Rejected, "contact"
	}
	p, ok := ps[f["purpose"]]
	if !ok {
		return Rejected, "purpose"
	}
	enums := map[string][]string{
		"status":  {"granted", "withdrawn", ""},
		"method":  {"checkbox", "button", "dropdown", "account_settings", "email_reply", "verbal", "paper_form", "double_opt_in", ""},
		"source":  {"first_party", "third_party", ""},
		"bundled": {"true", "false", ""},
	}
	for _, c := range []string{"status", "method", "source", "bundled"} {
		if !slices.Contains(enums[c], f[c]) {
			return Rejected, c
		}
	}
	dates := map[string]time.Time{}
	for _, c := range []string{"captured_at", "last_engaged_at"} {
		if f[c] == "" {
			continue
		}
		d, err := time.Parse(time.RFC3339, f[c])
		if err != nil {
			d, err = time.Parse(time.DateOnly, f[c])
		}
		if err != nil || d.After(now.Add(5*time.Minute)) {
			return Rejected, c
		}
		dates[c] = d
	}
	cutoff := now.AddDate(0, -p.ReconfirmMonths, 0)
	old := func(c string) bool {
		d, ok := dates[c]
		return ok && p.ReconfirmMonths > 0 && d.Before(cutoff)
	}
	switch {
	case erased[normal(f["contact"])]:
		return Suppressed, ""
	case f["status"] == "withdrawn":
		return Withdrawn, ""
	case f["status"] == "":
		return NoRecord, ""
	case f["method"] == "":
		return MethodUnrecorded, ""
	case f["source"] == "third_party" && !p.ThirdPartyAllowed:
		return ThirdParty, ""
	case f["bundled"] == "true":
		return NotSpecific, ""
	case f["captured_at"] == "" || old("captured_at") || old("last_engaged_at"):
		return Stale, ""
	}
	return Valid, ""
}

// validContact is the spec's contact rule: an email address (one @, a
// local part of at most 64 bytes, a domain with a dot, no spaces or control
// characters) or an E.164 phone number.
func validContact(c string) bool {
	if len(c) > 1 && c[0] == '+' {
		digits := c[1:]
		if len(digits) <= 15 && digits[0] != '0' && strings.Trim(digits, "0123456789") == "" {
			return true
		}
	}
	local, domain, ok := strings.Cut(c, "@")
	if !ok || strings.Contains(domain, "@") || local == "" || len(local) > 64 || !strings.Contains(strings.Trim(domain, "."), ".") {
		return false
	}
	for _, r := range c {
		if r <= ' ' || r == 0x7f || r == utf8.RuneError {
			return false
		}
	}
	return true
}

func TestValidContact(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"ada@example.com", true},
		{"Dee.Müller12@Example.co.uk", true},
		{"+447700900123", true},
		{"jo.example.com", false},
		{"jo@@example.com", false},
		{"jo@localhost", false},
		{"jo smith@example.com", false},
		{strings.Repeat("x", 65) + "@example.com", false},
		{"+0123", false},
		{"+12345678901234567", false},
	}
	for _, tt := range tests {
		if got := validContact(tt.in); got != tt.want {
			t.Errorf("validContact(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func ExampleGenerate() {
	var b bytes.Buffer
	exp, err := Generate(&b, Options{Rows: 1000, Seed: 1, Now: time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		panic(err)
	}
	header, _, _ := strings.Cut(b.String(), "\n")
	fmt.Println(header)
	fmt.Println(exp.Report.Rows, "rows")
	// Output:
	// contact,purpose,status,method,source,third_party,captured_at,last_engaged_at,notice_version,evidence_ref,bundled
	// 1000 rows
}
