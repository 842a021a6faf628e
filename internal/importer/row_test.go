package importer

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/consentd/consentd/consent"
	"github.com/consentd/consentd/internal/identifier"
)

// importNow is the clock of the parser and classifier tests.
var importNow = time.Date(2026, 6, 15, 12, 0, 0, 0, time.UTC)

func defaultRegistry(t testing.TB) *consent.Registry {
	t.Helper()
	ps := append(consent.DefaultPurposes(),
		consent.Purpose{Name: "partner_offers", ReconfirmMonths: 0, ThirdPartyAllowed: true})
	reg, err := consent.NewRegistry(ps)
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// rawRow builds a record's cells by field name; unnamed fields are empty.
func rawRow(kv ...string) *[numFields]string {
	var raw [numFields]string
	for i := 0; i < len(kv); i += 2 {
		f, ok := fieldByName(kv[i])
		if !ok {
			panic("no field " + kv[i])
		}
		raw[f] = kv[i+1]
	}
	return &raw
}

// parsed is what the parser tests compare: shared's fields, exported.
type parsed struct {
	Contact, Key, ThirdParty, Notice, Evidence string
	Method                                     consent.Method
	Source                                     consent.Source
	Captured, LastEngaged                      time.Time
	Bundled                                    bool
	Reject                                     string
}

func parsedOf(s *shared) parsed {
	return parsed{Contact: s.contact, Key: s.key, ThirdParty: s.thirdParty, Notice: s.notice, Evidence: s.evidence,
		Method: s.method, Source: s.source, Captured: s.captured, LastEngaged: s.lastEngaged, Bundled: s.bundled, Reject: s.reject}
}

func TestParseRow(t *testing.T) {
	day := func(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }
	rejected := func(reason string) parsed { return parsed{Reject: reason} }
	tests := []struct {
		name   string
		raw    *[numFields]string
		want   parsed
		region string // consentctl import --default-region
	}{
		{"full first-party grant", rawRow("contact", " Ada@Example.com ", "method", "Checkbox", "source", "first_party",
			"captured_at", "2026-01-10", "last_engaged_at", "2026-05-01T10:00:00+02:00", "notice_version", "v7",
			"evidence_ref", "form:signup, step 2", "bundled", "false"),
			parsed{Contact: " Ada@Example.com ", Key: "ada@example.com", Method: consent.MethodCheckbox,
				Source: consent.SourceFirstParty, Captured: day(2026, 1, 10), LastEngaged: time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC),
				Notice: "v7", Evidence: "form:signup, step 2"}, ""},
		{"a named third party without a source is third-party", rawRow("contact", "+4915112345678", "third_party", "Acme Lists", "bundled", "TRUE"),
			parsed{Contact: "+4915112345678", Key: "+4915112345678", Source: consent.SourceThirdParty, ThirdParty: "Acme Lists", Bundled: true}, ""},
		{"third-party source without a name", rawRow("contact", "a@b.co", "source", "third_party", "method", "double_opt_in"),
			parsed{Contact: "a@b.co", Key: "a@b.co", Source: consent.SourceThirdParty, Method: consent.MethodDoubleOptIn}, ""},
		{"empty contact", rawRow("contact", "  "), rejected("contact: must not be empty"), ""},
		{"no @", rawRow("contact", "jo.example.com"), rejected("contact: not an email address or phone number"), ""},
		{"two @", rawRow("contact", "jo@@example.com"), rejected("contact: email address must have exactly one @"), ""},
		{"no dot in the domain", rawRow("contact", "jo@localhost"), rejected("contact: " + identifier.ErrDomainDot.Error()), ""},
		{"domain ends with a dot", rawRow("contact", "jo@example."), rejected("contact: " + identifier.ErrDomain.Error()), ""},
		{"space inside", rawRow("contact", "jo smith@example.com"), rejected("contact: " + identifier.ErrSpace.Error()), ""},
		{"control character", rawRow("contact", "jo\x01@example.com"), rejected("contact: must not contain control characters"), ""},
		{"zero-width space", rawRow("contact", "jo\u200b@example.com"), rejected("contact: " + identifier.ErrInvisible.Error()), ""},
		{"bidi override", rawRow("contact", "\u202ejo@example.com"), rejected("contact: " + identifier.ErrInvisible.Error()), ""},
		{"display name", rawRow("contact", "Jo <jo@example.com>"), rejected("contact: " + identifier.ErrDisplayName.Error()), ""},
		{"what Grant once took", rawRow("contact", "ada example.com"), rejected("contact: not an email address or phone number"), ""},
		{"local part over 64", rawRow("contact", strings.Repeat("x", 65)+"@example.com"), rejected("contact: " + identifier.ErrLocalLong.Error()), ""},
		{"local part of 64", rawRow("contact", strings.Repeat("x", 64)+"@example.com"),
			parsed{Contact: strings.Repeat("x", 64) + "@example.com", Key: strings.Repeat("x", 64) + "@example.com", Source: consent.SourceFirstParty}, ""},
		{"IDN domain", rawRow("contact", "Ada@Bücher.example"),
			parsed{Contact: "Ada@Bücher.example", Key: "ada@xn--bcher-kva.example", Source: consent.SourceFirstParty}, ""},
		{"formatted phone", rawRow("contact", "+44 20 7946 0958"),
			parsed{Contact: "+44 20 7946 0958", Key: "+442079460958", Source: consent.SourceFirstParty}, ""},
		{"national phone", rawRow("contact", "020 7946 0958"),
			parsed{Contact: "020 7946 0958", Key: "+442079460958", Source: consent.SourceFirstParty}, "GB"},
		{"national phone without a region", rawRow("contact", "020 7946 0958"), rejected("contact: " + identifier.ErrPhoneRegion.Error()), ""},
		{"external id", rawRow("contact", "CRM:12345"),
			parsed{Contact: "CRM:12345", Key: "crm:12345", Source: consent.SourceFirstParty}, ""},
		{"phone too short", rawRow("contact", "+1234567"), rejected("contact: not a valid phone number"), ""},
		{"phone too long", rawRow("contact", "+1234567890123456"), rejected("contact: not a valid phone number"), ""},
		{"phone without +", rawRow("contact", "4915112345678"), rejected("contact: " + identifier.ErrPhoneRegion.Error()), ""},
		{"unknown method", rawRow("contact", "a@b.co", "method", "tick"),
			rejected(`method: unknown method "tick" (known: ` + strings.Join(methodNames(), ", ") + ")"), ""},
		{"unknown source", rawRow("contact", "a@b.co", "source", "bought"),
			rejected(`source: unknown source "bought" (known: first_party, third_party)`), ""},
		{"first party naming a third party", rawRow("contact", "a@b.co", "source", "first_party", "third_party", "Acme"),
			rejected(`third_party: names "Acme" but source is first_party`), ""},
		{"unparseable date", rawRow("contact", "a@b.co", "captured_at", "31/12/2020"),
			rejected(`captured_at: cannot parse "31/12/2020" (want RFC 3339 or YYYY-MM-DD)`), ""},
		{"impossible date", rawRow("contact", "a@b.co", "last_engaged_at", "2024-02-30"),
			rejected(`last_engaged_at: cannot parse "2024-02-30" (want RFC 3339 or YYYY-MM-DD)`), ""},
		{"future date", rawRow("contact", "a@b.co", "captured_at", "2026-06-15T12:06:00Z"),
			rejected(`captured_at: "2026-06-15T12:06:00Z" is in the future`), ""},
		{"within the clock skew", rawRow("contact", "a@b.co", "captured_at", "2026-06-15T12:04:00Z"),
			parsed{Contact: "a@b.co", Key: "a@b.co", Source: consent.SourceFirstParty, Captured: time.Date(2026, 6, 15, 12, 4, 0, 0, time.UTC)}, ""},
		{"before 1990", rawRow("contact", "a@b.co", "captured_at", "1989-12-31"),
			rejected(`captured_at: "1989-12-31" is before 1990-01-01`), ""},
		{"bad bundled", rawRow("contact", "a@b.co", "bundled", "yes"), rejected(`bundled: "yes" is not true, false or empty`), ""},
		{"control character in a label", rawRow("contact", "a@b.co", "evidence_ref", "scan\x00"),
			rejected("evidence_ref: must not contain control characters"), ""},
		{"the contact is judged first", rawRow("contact", "nope", "method", "tick", "captured_at", "x"),
			rejected("contact: not an email address or phone number"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := parsedOf(parseShared(tt.raw, importNow, identifier.Parser{DefaultRegion: tt.region}))
			if tt.want.Reject != "" {
				got = parsed{Reject: got.Reject}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("parseShared (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseStatus(t *testing.T) {
	for _, tt := range []struct {
		cell   string
		want   consent.ClaimStatus
		reject string
	}{
		{"", consent.ClaimNone, ""}, {" granted ", consent.ClaimGranted, ""}, {"Withdrawn", consent.ClaimWithdrawn, ""},
		{"yes", 0, `status: unknown status "yes" (want granted, withdrawn or empty)`},
	} {
		got, reject := parseStatus(fStatus, tt.cell)
		if got != tt.want || reject != tt.reject {
			t.Errorf("parseStatus(%q) = %v, %q; want %v, %q", tt.cell, got, reject, tt.want, tt.reject)
		}
	}
}

// TestRowClassify: every column a row reads reaches consent.Classify (whose
// own tests hold the rules), and the outcome is the class's.
func TestRowClassify(t *testing.T) {
	reg := defaultRegistry(t)
	recent := importNow.AddDate(0, -3, 0)
	grant := func(mod func(r *row)) row {
		r := row{purpose: "email_marketing", status: consent.ClaimGranted, shared: &shared{key: "a@b.co",
			method: consent.MethodCheckbox, source: consent.SourceFirstParty, captured: recent}}
		if mod != nil {
			mod(&r)
		}
		return r
	}
	tests := []struct {
		name string
		r    row
		want outcome
	}{
		{"valid", grant(nil), outValid},
		{"status: withdrawn", grant(func(r *row) { r.status = consent.ClaimWithdrawn }), outWithdrawn},
		{"status: none", grant(func(r *row) { r.status = consent.ClaimNone }), outNoRecord},
		{"method", grant(func(r *row) { r.method = consent.MethodUnspecified }), outMethodUnrecorded},
		{"source", grant(func(r *row) { r.source = consent.SourceThirdParty }), outThirdParty},
		{"third party, where the purpose accepts it", grant(func(r *row) {
			r.purpose, r.source, r.thirdParty = "partner_offers", consent.SourceThirdParty, "Acme"
		}), outValid},
		{"bundled", grant(func(r *row) { r.bundled = true }), outNotSpecific},
		{"captured_at", grant(func(r *row) { r.captured = importNow.AddDate(-2, 0, 0) }), outStale},
		{"last_engaged_at", grant(func(r *row) { r.lastEngaged = importNow.AddDate(-3, 0, 0) }), outStale},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, ok := reg.Lookup(tt.r.purpose)
			if !ok {
				t.Fatalf("no purpose %q", tt.r.purpose)
			}
			if got := tt.r.classify(p, importNow); got != tt.want {
				t.Errorf("classify = %s, want %s", got, tt.want)
			}
		})
	}
}

// The outcomes' names are the report's: its counts' keys and its segment
// files' names.
func TestOutcomeNames(t *testing.T) {
	var got []string
	for o := range numOutcomes {
		got = append(got, o.String())
	}
	want := []string{"rejected", "suppressed", "valid", "withdrawn", "no_record", "method_unrecorded", "third_party", "not_specific", "stale"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("outcome names (-want +got):\n%s", diff)
	}
}

var requestIDPattern = regexp.MustCompile(`^import-[0-9a-f]{32}$`)

// A request id depends on what the write carries but its contact, on the
// contact's salt from consentd, and on nothing else: the same row is the
// same request, a different row another.
func TestRequestID(t *testing.T) {
	base := func() row {
		return row{purpose: "email_marketing", status: consent.ClaimGranted, shared: &shared{contact: " a@b.co", key: "a@b.co",
			method: consent.MethodCheckbox, source: consent.SourceFirstParty, captured: importNow.AddDate(0, -1, 0),
			notice: "v1", evidence: "form:1"}}
	}
	r := base()
	id := r.requestID("grant")
	if !requestIDPattern.MatchString(id) {
		t.Fatalf("request id %q does not match %s", id, requestIDPattern)
	}
	same := base()
	same.contact, same.line = "a@b.co  ", 99 // as given and where: not part of the write
	if got := same.requestID("grant"); got != id {
		t.Errorf("the same write on another line: id %s, want %s", got, id)
	}
	// Nor is the contact: the id, stored in the history, must not be a
	// plain hash of an address. Its salt is what tells contacts apart.
	other := base()
	other.key = "c@b.co"
	if got := other.requestID("grant"); got != id {
		t.Errorf("the same write for another contact with the same salt: id %s, want %s (the contact must not be hashed in)", got, id)
	}
	for name, mod := range map[string]func(r *row){
		"purpose":     func(r *row) { r.purpose = "sales_outreach" },
		"method":      func(r *row) { r.method = consent.MethodButton },
		"source":      func(r *row) { r.source = consent.SourceThirdParty },
		"third_party": func(r *row) { r.thirdParty = "Acme" },
		"captured_at": func(r *row) { r.captured = r.captured.Add(time.Second) },
		"notice":      func(r *row) { r.notice = "v2" },
		"evidence":    func(r *row) { r.evidence = "form:2" },
		"salt":        func(r *row) { r.salt = []byte("another contact.") },
	} {
		r := base()
		sh := *r.shared
		r.shared = &sh
		mod(&r)
		if r.requestID("grant") == id {
			t.Errorf("a different %s gives the same id", name)
		}
	}
	if r.requestID("withdraw") == id {
		t.Error("a withdrawal has the grant's id")
	}
	// The fields are separated: moving text from one to the next changes it.
	a, b := base(), base()
	a.notice, a.evidence = "v1x", ""
	b.notice, b.evidence = "v1", "x"
	if a.requestID("grant") == b.requestID("grant") {
		t.Error(`notice "v1x" + evidence "" has the id of notice "v1" + evidence "x"`)
	}
}

// A write carries nothing of the clock: the same row makes the same
// request on every run.
func TestWriteIsStable(t *testing.T) {
	r := row{purpose: "email_marketing", status: consent.ClaimWithdrawn, shared: &shared{key: "a@b.co"}}
	w := r.write(outWithdrawn, "consentctl import").GetWithdraw()
	if w.GetCapturedAt() != nil {
		t.Errorf("an undated withdrawal carries captured_at %v, want none (consentd dates it)", w.GetCapturedAt())
	}
	if got, want := w.GetRequestId(), r.requestID("withdraw"); got != want {
		t.Errorf("request id %q, want %q", got, want)
	}
}

func TestMapping(t *testing.T) {
	reg := defaultRegistry(t)
	header := func(names ...string) func(string) (int, bool) {
		return func(name string) (int, bool) {
			for i, h := range names {
				if columnKey(h) == columnKey(name) {
					return i, true
				}
			}
			return 0, false
		}
	}
	m, err := NewMapping("", []string{"contact=E-Mail", "captured_at=Opt-in date"})
	if err != nil {
		t.Fatal(err)
	}
	l, err := m.resolve(reg, header(" e-mail ", "Purpose", "Opt-In Date", "Status"))
	if err != nil {
		t.Fatal(err)
	}
	if l.field[fContact] != 0 || l.field[fPurpose] != 1 || l.field[fCapturedAt] != 2 || l.field[fStatus] != 3 || l.field[fMethod] != -1 {
		t.Errorf("layout %v, want contact 0, purpose 1, captured_at 2, status 3, method absent", l.field)
	}

	for _, tt := range []struct {
		name   string
		flags  []string
		header []string
		want   string
	}{
		{"not FIELD=COLUMN", []string{"contact"}, nil, `--map "contact": want FIELD=COLUMN`},
		{"unknown field", []string{"email=Email"}, nil, `--map email=Email: unknown field "email"`},
		{"a column the header lacks", []string{"contact=Email"}, []string{"contact", "purpose"}, `--map contact=Email: the header has no column "Email"`},
		{"no purpose column", nil, []string{"contact", "status"}, `no purpose column: the header has no "purpose" column`},
		{"no contact column", nil, []string{"email", "purpose"}, `no contact column: the header has no "contact" column`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m, err := NewMapping("", tt.flags)
			if err == nil {
				_, err = m.resolve(reg, header(tt.header...))
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// FuzzRow feeds arbitrary records, after the default header, through
// the reader and the row parser: whatever a row says, it becomes exactly
// one outcome, and a row that is not rejected is one consentd would take.
func FuzzRow(f *testing.F) {
	for _, s := range []string{
		"ada@example.com,email_marketing,granted,checkbox,,,2026-01-10,,v1,form:1,\n",
		" Bo@Example.com ,sales_outreach,withdrawn,,,,,,,,\n",
		"+4915112345678,ad_retargeting,granted,verbal,third_party,Acme,2026-06-01T10:00:00Z,2020-01-01,,,true\n",
		"jo@localhost,newsletter,yes,tick,bought,,31/12/2020,n/a,,,maybe\n",
		"\"a,b\"@x.co,email_marketing\n",
		"\"unterminated,email_marketing,granted\n",
		"x@y.co,partner_offers,granted,button,,,2026-06-15T12:04:59.999999999Z,,,\"scan \"\"paper\"\"\",false\n",
	} {
		f.Add(s)
	}
	reg := defaultRegistry(f)
	header := strings.Join(fieldNames[:], ",") + "\n"
	f.Fuzz(func(t *testing.T, body string) {
		in, err := newCSVInput(strings.NewReader(header + body))
		if err != nil {
			t.Fatal(err)
		}
		l, err := defaultMapping().resolve(reg, in.column)
		if err != nil {
			t.Fatal(err)
		}
		imp := &job{cfg: &Config{File: "fuzz.csv"}, reg: reg, now: importNow, layout: l, input: in}
		var raw [numFields]string
		for range 1000 {
			rec, err := in.read()
			if err != nil {
				return // io.EOF, or a reader error that ends the import
			}
			rows := imp.rows(&rec, &raw)
			if len(rows) != 1 {
				t.Fatalf("record at line %d gave %d rows, want 1", rec.line, len(rows))
			}
			r := &rows[0]
			if r.line < 2 {
				t.Errorf("line %d: data starts on line 2", r.line)
			}
			if r.reject != "" {
				col, _, ok := strings.Cut(r.reject, ":")
				if _, known := fieldByName(col); !ok || (!known && col != "row") {
					t.Errorf("reject reason %q names no column", r.reject)
				}
				continue
			}
			p, ok := reg.Lookup(r.purpose)
			if !ok {
				t.Fatalf("purpose %q not rejected", r.purpose)
			}
			if id, err := (identifier.Parser{}).Parse(r.key); err != nil || id.Canonical != r.key {
				t.Errorf("contact %q accepted, but consentd says %+v, %v", r.key, id, err)
			}
			for _, l := range []string{r.thirdParty, r.notice, r.evidence} {
				if err := consent.CheckLabel("label", l); err != nil {
					t.Errorf("label %q accepted: %v", l, err)
				}
			}
			for _, d := range []time.Time{r.captured, r.lastEngaged} {
				if d.After(importNow.Add(maxFutureSkew)) {
					t.Errorf("date %v accepted, more than %v ahead", d, maxFutureSkew)
				}
			}
			o := r.classify(p, importNow)
			if o == outRejected || o == outSuppressed || o >= numOutcomes {
				t.Errorf("classify = %s", o)
			}
			if o == outValid || o == outWithdrawn {
				w := r.write(o, "fuzz")
				id := w.GetGrant().GetRequestId() + w.GetWithdraw().GetRequestId()
				if !requestIDPattern.MatchString(id) || id != r.write(o, "fuzz").GetGrant().GetRequestId()+r.write(o, "fuzz").GetWithdraw().GetRequestId() {
					t.Errorf("request id %q is malformed or not stable", id)
				}
			}
		}
	})
}

// The NDJSON fast path reads what encoding/json reads, and leaves the rest
// to it.
func TestNDJSONFastPath(t *testing.T) {
	in := newNDJSONInput(strings.NewReader(""))
	for _, name := range fieldNames {
		in.column(name)
	}
	for _, line := range []string{
		`{"contact": "ada@example.com", "purpose": "email_marketing", "status": "granted", "bundled": false}`,
		`  {"Contact":"a@b.co","PURPOSE" : "x","bundled":true,"status":null,"extra":12.5e3}` + "\r\n",
		`{"contact": 4915112345678, "purpose": -1, "method": "", "extra": "ignored"}`,
		`{}`,
		`{"contact": "müller@example.com", "evidence_ref": "scan \"paper\"", "notice_version": "\u00e9"}`,
		`{"contact": "a@b.co", "status": ["granted"]}`,
		`{"contact": "a@b.co", "extra": {"nested": true}}`,
		`{"contact": "a@b.co", "purpose": `,
		`{"contact": "a@b.co"} {"contact": "c@d.co"}`,
		`{"contact": "a@b.co",}`,
		`{"contact": tru}`,
		`{"contact": 01}`,
		`["contact"]`,
		"{\"contact\": \"a\tb\"}",
	} {
		fast := make([]string, in.n)
		ok := in.parseFlat([]byte(line), fast)
		if !ok && strings.HasPrefix(line, `{"contact": "ada@`) {
			t.Errorf("%s: the fast path refused a plain line", line)
		}
		if ok {
			slow := in.parseSlow([]byte(line))
			if slow.bad != "" || !cmp.Equal(fast, slow.cells) {
				t.Errorf("%s: fast path read %q, encoding/json %q (%s)", line, fast, slow.cells, slow.bad)
			}
		}
	}
}

// FuzzNDJSONLine checks the NDJSON fast path against encoding/json on
// any line: whatever it takes, it reads as encoding/json does.
func FuzzNDJSONLine(f *testing.F) {
	for _, s := range []string{
		`{"contact": "ada@example.com", "purpose": "email_marketing", "status": "granted", "bundled": false}`,
		`{"Contact":"a@b.co","x":1e5,"status":null}`,
		`{"contact": "a\u00e9@b.co"}`,
		`{"contact": -0.5}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		in := newNDJSONInput(strings.NewReader(""))
		for _, name := range fieldNames {
			in.column(name)
		}
		fast := make([]string, in.n)
		if !in.parseFlat([]byte(line), fast) {
			return
		}
		slow := in.parseSlow([]byte(line))
		if slow.bad != "" || !cmp.Equal(fast, slow.cells) {
			t.Errorf("%q: fast path read %q, encoding/json %q (%s)", line, fast, slow.cells, slow.bad)
		}
	})
}
