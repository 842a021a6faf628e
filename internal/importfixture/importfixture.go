// Package importfixture generates the test fixture of `consentctl import`: a
// CRM-like export of consent columns in which every row's outcome is known in
// advance, together with what the import must report for it.
//
// The file uses the default column names and covers, for every purpose of
// the registry, every outcome: valid, withdrawn, suppressed (contacts the
// test erases before importing: Expected.Erase) and each re-permission
// reason, plus rejects of every kind (bad email, unknown purpose,
// unparseable date, bad method, future date, wrong field count). Each
// (contact, purpose) has at most one row, so each row's outcome, and what
// Check answers for it after the import, is well defined. Dates are chosen
// months away from the edges of the purposes' windows, so an import run
// days after the fixture was generated still agrees with it.
//
// The output depends only on Options: the same seed gives the same rows,
// outcomes and counts on any day, and the same bytes on the same day (UTC).
package importfixture

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/consentd/consentd/consent"
)

// Outcome names, spelled as report.json and the segment files spell them.
const (
	Valid            = "valid"
	Withdrawn        = "withdrawn"
	Suppressed       = "suppressed"
	NoRecord         = "no_record"
	MethodUnrecorded = "method_unrecorded"
	ThirdParty       = "third_party"
	NotSpecific      = "not_specific"
	Stale            = "stale"
	Rejected         = "rejected"
)

// RepermissionReasons returns the re-permission reasons in the order the
// import applies them (the first that fits a row is its reason).
func RepermissionReasons() []string {
	return []string{NoRecord, MethodUnrecorded, ThirdParty, NotSpecific, Stale}
}

// Columns returns the default column names in the order the fixture writes
// them.
func Columns() []string {
	return []string{"contact", "purpose", "status", "method", "source", "third_party",
		"captured_at", "last_engaged_at", "notice_version", "evidence_ref", "bundled"}
}

// Options says what to generate.
type Options struct {
	Rows   int       // data rows, the header not counted; at least MinRows
	Seed   int64     // the same seed (and Now) gives the same file
	Now    time.Time // when the import runs; only its day (UTC) counts, and an import up to 20 days later agrees
	Format string    // "csv" (the default when empty) or "ndjson"
	// Purposes is the registry the import runs against; nil means
	// consent.DefaultPurposes(), consentd's built-in registry.
	Purposes []consent.Purpose
}

// MinRows is the fewest rows Generate accepts: room for every category of
// every purpose a few times over.
const MinRows = 1000

// Row is what the import must do with one data row.
type Row struct {
	Line    int    // the input line (CSV: the header is line 1; NDJSON: the first object is line 1)
	Contact string // exactly as written in the file
	Purpose string // as written; for an unknown-purpose reject, the unknown name
	Outcome string // one of the outcome names above
	// Check is what Check answers for (Contact, Purpose) after the import:
	// granted for valid, withdrawn, erased for suppressed, no_consent for the
	// re-permission reasons and rejects. ReasonUnspecified for a row that
	// cannot be checked (its purpose is unknown, or consentd refuses its
	// contact).
	Check consent.Reason
	// Field is, for a rejected row, the column its reason names ("contact",
	// "purpose", "method", "captured_at", "last_engaged_at"); "" for a row
	// with the wrong number of fields, whose wording is the importer's.
	Field string
}

// Counts is one purpose's entry in report.json.
type Counts struct {
	Valid            int `json:"valid"`
	Withdrawn        int `json:"withdrawn"`
	Suppressed       int `json:"suppressed"`
	NoRecord         int `json:"no_record"`
	MethodUnrecorded int `json:"method_unrecorded"`
	ThirdParty       int `json:"third_party"`
	NotSpecific      int `json:"not_specific"`
	Stale            int `json:"stale"`
}

// add counts one row of outcome o.
func (c *Counts) add(o string) {
	switch o {
	case Valid:
		c.Valid++
	case Withdrawn:
		c.Withdrawn++
	case Suppressed:
		c.Suppressed++
	case NoRecord:
		c.NoRecord++
	case MethodUnrecorded:
		c.MethodUnrecorded++
	case ThirdParty:
		c.ThirdParty++
	case NotSpecific:
		c.NotSpecific++
	case Stale:
		c.Stale++
	}
}

// Get returns the count of outcome o.
func (c Counts) Get(o string) int {
	return map[string]int{Valid: c.Valid, Withdrawn: c.Withdrawn, Suppressed: c.Suppressed,
		NoRecord: c.NoRecord, MethodUnrecorded: c.MethodUnrecorded, ThirdParty: c.ThirdParty,
		NotSpecific: c.NotSpecific, Stale: c.Stale}[o]
}

// Imported is report.json's count of writes.
type Imported struct {
	Grants      int `json:"grants"`
	Withdrawals int `json:"withdrawals"`
}

// Report is the part of report.json that depends only on the file: what
// the import must count. (file, dry_run and the timings are the run's.)
type Report struct {
	Rows     int               `json:"rows"`
	Rejected int               `json:"rejected"`
	Purposes map[string]Counts `json:"purposes"`
	Imported Imported          `json:"imported"`
}

// Reject is one line of rejects.csv: the input line and the column its
// reason names ("" when the importer words it: a wrong field count).
type Reject struct {
	Line  int
	Field string
}

// Expected is everything the import of the generated file must produce.
type Expected struct {
	Rows   []Row // in input order
	Report Report
	// Segments maps each non-empty segment file's name under repermission/
	// ("email_marketing.stale.csv") to its exact content.
	Segments map[string]string
	Rejects  []Reject // in input order
	// Erase lists the contacts to erase in consentd before the import: the
	// rows naming them are the suppressed ones.
	Erase []string
}

// Generate writes the fixture to w and returns what its import must do.
func Generate(w io.Writer, o Options) (Expected, error) {
	if o.Rows < MinRows {
		return Expected{}, fmt.Errorf("importfixture: Rows must be at least %d, got %d", MinRows, o.Rows)
	}
	if o.Format == "" {
		o.Format = "csv"
	}
	if o.Format != "csv" && o.Format != "ndjson" {
		return Expected{}, fmt.Errorf("importfixture: unknown format %q (want csv or ndjson)", o.Format)
	}
	if o.Now.IsZero() {
		return Expected{}, errors.New("importfixture: Now must be set")
	}
	if o.Purposes == nil {
		o.Purposes = consent.DefaultPurposes()
	}
	g := &gen{
		rng: rand.New(rand.NewPCG(uint64(o.Seed), 0x636f6e73656e7464)), // "consentd"
		// Dates count whole days back from the start of Now's day (UTC), so
		// a seed gives the same bytes all day long.
		now: o.Now.UTC().Truncate(24 * time.Hour),
		ps:  o.Purposes,
	}
	g.build(o.Rows)
	g.rng.Shuffle(len(g.rows), func(i, j int) { g.rows[i], g.rows[j] = g.rows[j], g.rows[i] })
	first := 2 // the header is line 1
	if o.Format == "ndjson" {
		first = 1
	}
	for i := range g.rows {
		g.rows[i].want.Line = first + i
	}
	exp, err := g.expected()
	if err != nil {
		return Expected{}, err
	}
	if o.Format == "ndjson" {
		err = g.writeNDJSON(w)
	} else {
		err = g.writeCSV(w)
	}
	if err != nil {
		return Expected{}, err
	}
	return exp, nil
}

// record is one generated row: the fields as written and what must become
// of it.
type record struct {
	fields []string // in Columns() order; fewer or more for a wrong field count
	want   Row
}

type gen struct {
	rng   *rand.Rand
	now   time.Time
	ps    []consent.Purpose
	rows  []record
	erase []string
	next  int // the next person's number: contacts are unique by it
}

// category is what a generated (contact, purpose) slot is made to be: an
// outcome, or a kind of reject.
type category string

const (
	badDate    category = "bad_date"
	badMethod  category = "bad_method"
	futureDate category = "future_date"
	fieldCount category = "field_count"
)

// person is one contact of the CRM.
type person struct {
	contact string // canonical: what Erase lists
	phone   bool
}

func (g *gen) newPerson() person {
	g.next++
	n := g.next
	if g.rng.IntN(10) == 0 {
		// E.164: a UK mobile-style number, unique by n.
		return person{contact: fmt.Sprintf("+4477%08d", n), phone: true}
	}
	first := []string{"ada", "bo", "cy", "dee", "eli", "fay", "gus", "hal", "ivy", "jo", "kit", "lou", "max", "nia", "ola", "pia"}
	last := []string{"smith", "jones", "garcia", "müller", "rossi", "dubois", "novak", "silva", "kim", "nowak"}
	domains := []string{"example.com", "example.org", "mail.example.net", "example.co.uk"}
	local := fmt.Sprintf("%s.%s%d", first[g.rng.IntN(len(first))], last[g.rng.IntN(len(last))], n)
	return person{contact: local + "@" + domains[g.rng.IntN(len(domains))]}
}

// written is how a row spells the person's contact: mostly as is, some in
// mixed or upper case, some with spaces around (a CRM export's mess, which
// consentd's normalisation makes one person).
func (g *gen) written(p person) string {
	c := p.contact
	switch r := g.rng.IntN(20); {
	case r == 0 && !p.phone:
		c = strings.ToUpper(c)
	case r <= 2 && !p.phone:
		c = titleCase(c)
	case r == 3:
		c = " " + c + "  "
	case r == 4:
		c = c + " "
	}
	return c
}

// titleCase upper-cases the first letter of each dot- or @-separated part.
func titleCase(s string) string {
	b := []rune(s)
	up := true
	for i, r := range b {
		if up {
			b[i] = []rune(strings.ToUpper(string(r)))[0]
		}
		up = r == '.' || r == '@'
	}
	return string(b)
}

// build fills g.rows with exactly n rows: first a block that covers every
// category of every purpose and every kind of reject a few times, then
// ordinary people until the count is reached.
func (g *gen) build(n int) {
	const each = 3
	for _, p := range g.ps {
		for _, c := range g.outcomesOf(p) {
			for range each {
				if c == Suppressed {
					g.erasedPerson([]consent.Purpose{p})
					continue
				}
				g.slot(g.newPerson(), p, c)
			}
		}
		for _, c := range []category{badDate, badMethod, futureDate, fieldCount} {
			for range each {
				g.slot(g.newPerson(), p, c)
			}
		}
	}
	for v := range badEmailVariants {
		for range each {
			g.badEmailRow(v)
		}
	}
	for range 2 * each {
		g.unknownPurposeRow(g.newPerson())
	}
	for len(g.rows) < n {
		switch r := g.rng.IntN(100); {
		case r < 3:
			g.erasedPerson(g.somePurposes())
		case r < 5:
			g.badEmailRow(g.rng.IntN(badEmailVariants))
		default:
			pr := g.newPerson()
			for _, p := range g.somePurposes() {
				g.slot(pr, p, g.weightedCategory(p))
			}
			if g.rng.IntN(50) == 0 {
				g.unknownPurposeRow(pr)
			}
		}
	}
	// The last person may have overshot: drop rows from the end. No row
	// depends on another, and an erased person whose rows all went is
	// removed from Erase.
	g.rows = g.rows[:n]
	kept := map[string]bool{}
	for _, r := range g.rows {
		if r.want.Outcome == Suppressed {
			kept[strings.ToLower(strings.TrimSpace(r.want.Contact))] = true
		}
	}
	var erase []string
	for _, c := range g.erase {
		if kept[c] {
			erase = append(erase, c)
		}
	}
	g.erase = erase
}

// outcomesOf lists the outcomes a row for purpose p can have: third_party
// only where p does not accept an unconfirmed third-party yes, stale only
// where p has a window.
func (g *gen) outcomesOf(p consent.Purpose) []category {
	out := []category{Valid, Withdrawn, Suppressed}
	for _, r := range RepermissionReasons() {
		if (r == ThirdParty && p.ThirdPartyAllowed) || (r == Stale && p.ReconfirmMonths == 0) {
			continue
		}
		out = append(out, category(r))
	}
	return out
}

// somePurposes picks one to all purposes, in registry order.
func (g *gen) somePurposes() []consent.Purpose {
	var out []consent.Purpose
	for len(out) == 0 {
		for _, p := range g.ps {
			if g.rng.IntN(2) == 0 {
				out = append(out, p)
			}
		}
	}
	return out
}

// weightedCategory picks an ordinary slot's category, in percent: a CRM
// where most yeses hold and a good share needs asking again.
func (g *gen) weightedCategory(p consent.Purpose) category {
	weights := []struct {
		c category
		w int
	}{
		{Valid, 42}, {Withdrawn, 10}, {NoRecord, 8}, {MethodUnrecorded, 8}, {ThirdParty, 8},
		{NotSpecific, 6}, {Stale, 11}, {badDate, 2}, {badMethod, 2}, {futureDate, 2}, {fieldCount, 1},
	}
	r := g.rng.IntN(100)
	for _, w := range weights {
		if r < w.w {
			if (w.c == ThirdParty && p.ThirdPartyAllowed) || (w.c == Stale && p.ReconfirmMonths == 0) {
				return Valid
			}
			return w.c
		}
		r -= w.w
	}
	return Valid
}

// fields are the columns of one row, by name.
type fields struct {
	contact, purpose, status, method, source, thirdParty,
	capturedAt, lastEngagedAt, notice, evidence, bundled string
}

func (f fields) list() []string {
	return []string{f.contact, f.purpose, f.status, f.method, f.source, f.thirdParty,
		f.capturedAt, f.lastEngagedAt, f.notice, f.evidence, f.bundled}
}

func (g *gen) pick(s ...string) string { return s[g.rng.IntN(len(s))] }

func (g *gen) affirmative() string {
	return g.pick("checkbox", "button", "dropdown", "account_settings", "email_reply", "verbal", "paper_form", "double_opt_in")
}

// Dates are whole days before now; a window of M months is taken as M*30
// days at most and M*31 at least, and every date stays at least a month
// (30 days) away from the window's edge, so a run days later agrees.

// within returns a date inside p's window: between a day and (window - 2
// months) ago.
func (g *gen) within(p consent.Purpose) time.Time {
	maxDays := 9 * 365 // no window: any past date
	if w := p.ReconfirmMonths * 30; w > 0 {
		maxDays = max(w-60, w/2, 1) // a short window keeps at least half its length clear
	}
	return g.now.AddDate(0, 0, -(1 + g.rng.IntN(maxDays)))
}

// outside returns a date outside p's window: 2 to 40 months past its edge.
func (g *gen) outside(p consent.Purpose) time.Time {
	return g.now.AddDate(0, 0, -(p.ReconfirmMonths*31 + 60 + g.rng.IntN(38*31)))
}

// after returns a date between t and a day ago: a last engagement after the
// capture.
func (g *gen) after(t time.Time) time.Time {
	days := int(g.now.Sub(t).Hours()/24) - 1
	if days <= 0 {
		return t
	}
	return t.AddDate(0, 0, g.rng.IntN(days))
}

// date writes t in one of the forms the import takes: a calendar date, or
// RFC 3339 with a time of day in UTC or with an offset.
func (g *gen) date(t time.Time) string {
	switch g.rng.IntN(3) {
	case 0:
		return t.Format(time.DateOnly)
	case 1:
		return t.Add(time.Duration(g.rng.IntN(86400)) * time.Second).Format(time.RFC3339)
	default:
		return t.Add(time.Duration(g.rng.IntN(86400)) * time.Second).In(time.FixedZone("", 2*3600)).Format(time.RFC3339)
	}
}

func (g *gen) maybeDate(t time.Time) string {
	if g.rng.IntN(3) == 0 {
		return ""
	}
	return g.date(t)
}

// proof fills the columns a valid grant has: first party, a recorded
// method, specific, captured (and last engaged, when given) inside p's
// window, with a notice and evidence (some of them quoted, with commas).
func (g *gen) proof(f *fields, p consent.Purpose) {
	f.status = "granted"
	f.method = g.affirmative()
	f.source = "first_party"
	captured := g.within(p)
	f.capturedAt = g.date(captured)
	f.lastEngagedAt = g.maybeDate(g.after(captured))
	f.notice = g.pick("2023-01", "2024-05", "v7", "")
	f.evidence = g.pick("form:signup", "form:checkout, step 2", "call:4711", `scan "paper, 2024"`, "")
	f.bundled = g.pick("false", "", "false")
}

// thirdParty marks f as a yes bought from a list.
func (g *gen) thirdParty(f *fields) {
	f.source = "third_party"
	f.thirdParty = g.pick("Acme Lists, Inc.", "DataBroker GmbH", "Leads4U")
}

// slot appends the row of person pr for purpose p made to be c.
func (g *gen) slot(pr person, p consent.Purpose, c category) {
	f := fields{contact: g.written(pr), purpose: p.Name}
	want := Row{Contact: f.contact, Purpose: p.Name, Outcome: string(c), Check: consent.ReasonNoConsent}
	g.proof(&f, p)
	switch c {
	case Valid:
		if p.ThirdPartyAllowed && g.rng.IntN(4) == 0 {
			g.thirdParty(&f) // accepted unconfirmed for this purpose
		}
		want.Check = consent.ReasonGranted
	case Withdrawn:
		// An opt-out wins whatever else the row says.
		f.status = "withdrawn"
		f.method = g.pick("", "email_reply", "account_settings", "")
		f.capturedAt = g.maybeDate(g.now.AddDate(0, 0, -(1 + g.rng.IntN(6*365))))
		f.lastEngagedAt = ""
		if g.rng.IntN(4) == 0 {
			g.thirdParty(&f)
		}
		if g.rng.IntN(4) == 0 {
			f.bundled = "true"
		}
		want.Check = consent.ReasonWithdrawn
	case NoRecord:
		// Nothing known for this purpose; other columns may say anything.
		f.status = ""
		f.method = g.pick("", "", g.affirmative())
		if g.rng.IntN(3) == 0 {
			g.thirdParty(&f)
		}
		if g.rng.IntN(3) == 0 {
			f.capturedAt = g.maybeDate(g.outside(p))
		}
	case MethodUnrecorded:
		// The box was ticked, nobody wrote down how; later reasons may
		// apply too, this one comes first.
		f.method = ""
		if g.rng.IntN(3) == 0 {
			g.thirdParty(&f)
		}
		if g.rng.IntN(3) == 0 {
			f.bundled = "true"
		}
	case ThirdParty:
		g.thirdParty(&f)
		if g.rng.IntN(3) == 0 {
			f.bundled = "true"
		}
		if g.rng.IntN(3) == 0 {
			f.capturedAt = g.maybeDate(g.outside(p))
		}
	case NotSpecific:
		f.bundled = "true"
		if g.rng.IntN(3) == 0 {
			f.capturedAt = g.maybeDate(g.outside(p))
		}
	case Stale:
		switch g.rng.IntN(3) {
		case 0: // never dated
			f.capturedAt, f.lastEngagedAt = "", ""
		case 1: // captured long ago, no engagement on record
			f.capturedAt, f.lastEngagedAt = g.date(g.outside(p)), ""
		default: // captured and last engaged long ago
			captured := g.outside(p)
			f.capturedAt = g.date(captured)
			last := g.after(captured)
			if edge := g.now.AddDate(0, 0, -(p.ReconfirmMonths*31 + 30)); last.After(edge) {
				last = edge
			}
			f.lastEngagedAt = g.date(last)
		}
	case badDate:
		want.Outcome = Rejected
		if g.rng.IntN(2) == 0 {
			f.capturedAt, want.Field = g.pick("31/12/2024", "2024-13-45", "yesterday", "2024-02-30", "March 3, 2024"), "captured_at"
		} else {
			f.lastEngagedAt, want.Field = g.pick("n/a", "2024/05/06", "20240506"), "last_engaged_at"
		}
	case badMethod:
		want.Outcome, want.Field = Rejected, "method"
		f.method = g.pick("tick", "opt_in", "implied", "web form")
	case futureDate:
		// Well beyond the 5 minutes of clock skew the import allows, and
		// still ahead for a run weeks after the fixture was made.
		want.Outcome, want.Field = Rejected, "captured_at"
		f.capturedAt = g.date(g.now.AddDate(0, 0, 60+g.rng.IntN(400)))
		f.lastEngagedAt = ""
	case fieldCount:
		want.Outcome, want.Field = Rejected, ""
		list := f.list()
		if g.rng.IntN(2) == 0 {
			list = list[:len(list)-1-g.rng.IntN(3)]
		} else {
			list = append(list, "extra")
		}
		g.rows = append(g.rows, record{fields: list, want: want})
		return
	}
	g.rows = append(g.rows, record{fields: f.list(), want: want})
}

// erasedPerson appends rows for a person the test erases first: valid
// grants a naive importer would take, and yeses from a bought list, the
// case suppression exists for.
func (g *gen) erasedPerson(ps []consent.Purpose) {
	pr := g.newPerson()
	g.erase = append(g.erase, pr.contact)
	for _, p := range ps {
		f := fields{contact: g.written(pr), purpose: p.Name}
		g.proof(&f, p)
		if g.rng.IntN(3) == 0 {
			g.thirdParty(&f)
		}
		g.rows = append(g.rows, record{fields: f.list(), want: Row{
			Contact: f.contact, Purpose: p.Name, Outcome: Suppressed, Check: consent.ReasonErased}})
	}
}

// badEmailVariants is how many ways badEmailRow breaks an address.
const badEmailVariants = 5

// badEmailRow appends a valid-looking grant whose contact is no email
// address (nor a phone number): rejected, and never consent. There is
// nothing to check afterwards: consentd refuses it as a contact.
func (g *gen) badEmailRow(variant int) {
	g.next++
	n := g.next
	contact := []string{
		fmt.Sprintf("jo.smith%d.example.com", n),                    // no @
		fmt.Sprintf("jo%d@@example.com", n),                         // two @
		fmt.Sprintf("jo%d@localhost", n),                            // no dot in the domain
		fmt.Sprintf("jo smith%d@example.com", n),                    // a space inside
		fmt.Sprintf("%s%d@example.com", strings.Repeat("x", 64), n), // local part over 64
	}[variant]
	p := g.ps[g.rng.IntN(len(g.ps))]
	f := fields{contact: contact, purpose: p.Name}
	g.proof(&f, p)
	g.rows = append(g.rows, record{fields: f.list(), want: Row{
		Contact: contact, Purpose: p.Name, Outcome: Rejected, Field: "contact"}})
}

// unknownPurposeRow appends a valid-looking grant for a purpose the
// registry does not have.
func (g *gen) unknownPurposeRow(pr person) {
	var names []string
	for _, n := range []string{"newsletter", "sms_marketing", "marketing", "partner_offers"} {
		if !slices.ContainsFunc(g.ps, func(p consent.Purpose) bool { return p.Name == n }) {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		names = []string{"no_such_purpose_" + strings.Repeat("x", 50)} // longer than a registry allows
	}
	f := fields{contact: g.written(pr), purpose: g.pick(names...)}
	g.proof(&f, g.ps[0])
	g.rows = append(g.rows, record{fields: f.list(), want: Row{
		Contact: f.contact, Purpose: f.purpose, Outcome: Rejected, Field: "purpose"}})
}

// expected derives what the import must produce from the rows in their
// final order.
func (g *gen) expected() (Expected, error) {
	exp := Expected{
		Report:   Report{Rows: len(g.rows), Purposes: map[string]Counts{}},
		Segments: map[string]string{},
		Erase:    g.erase,
	}
	for _, p := range g.ps {
		exp.Report.Purposes[p.Name] = Counts{}
	}
	segments := map[string]*csv.Writer{}
	bufs := map[string]*bytes.Buffer{}
	var names []string
	for _, r := range g.rows {
		w := r.want
		exp.Rows = append(exp.Rows, w)
		switch w.Outcome {
		case Rejected:
			exp.Report.Rejected++
			exp.Rejects = append(exp.Rejects, Reject{Line: w.Line, Field: w.Field})
			continue
		case Valid:
			exp.Report.Imported.Grants++
		case Withdrawn:
			exp.Report.Imported.Withdrawals++
		}
		c := exp.Report.Purposes[w.Purpose]
		c.add(w.Outcome)
		exp.Report.Purposes[w.Purpose] = c
		if w.Check != consent.ReasonNoConsent {
			continue // not a re-permission segment
		}
		name := w.Purpose + "." + w.Outcome + ".csv"
		sw := segments[name]
		if sw == nil {
			bufs[name] = &bytes.Buffer{}
			sw = csv.NewWriter(bufs[name])
			sw.Write([]string{"contact", "line"})
			segments[name] = sw
			names = append(names, name)
		}
		sw.Write([]string{w.Contact, fmt.Sprint(w.Line)})
	}
	for _, name := range names {
		segments[name].Flush()
		if err := segments[name].Error(); err != nil {
			return Expected{}, err
		}
		exp.Segments[name] = bufs[name].String()
	}
	return exp, nil
}

func (g *gen) writeCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	cw.Write(Columns())
	for _, r := range g.rows {
		cw.Write(r.fields)
	}
	cw.Flush()
	return cw.Error()
}

// writeNDJSON writes one JSON object a line, keyed by the default column
// names, every value a string. A row with the wrong field count becomes a
// line that is not a JSON object at all: NDJSON's malformed row.
func (g *gen) writeNDJSON(w io.Writer) error {
	cols := Columns()
	var b bytes.Buffer
	for _, r := range g.rows {
		if r.want.Outcome == Rejected && r.want.Field == "" {
			fmt.Fprintf(&b, "{%q: %q, %q: %q, %q\n", cols[0], r.fields[0], cols[1], r.fields[1], cols[2])
			continue
		}
		b.WriteByte('{')
		for i, c := range cols {
			if i > 0 {
				b.WriteString(", ")
			}
			k, _ := json.Marshal(c)
			v, _ := json.Marshal(r.fields[i])
			b.Write(k)
			b.WriteString(": ")
			b.Write(v)
		}
		b.WriteString("}\n")
		if b.Len() > 64<<10 {
			if _, err := w.Write(b.Bytes()); err != nil {
				return err
			}
			b.Reset()
		}
	}
	_, err := w.Write(b.Bytes())
	return err
}
