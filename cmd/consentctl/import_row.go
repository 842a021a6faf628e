package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/consentd/consentd/consent"
	pb "github.com/consentd/consentd/proto/consent/v1"
)

// field is one thing an import row may say about a (contact, purpose).
type field int

// The fields, in the order of the default header.
const (
	fContact field = iota
	fPurpose
	fStatus
	fMethod
	fSource
	fThirdParty
	fCapturedAt
	fLastEngagedAt
	fNotice
	fEvidence
	fBundled
	numFields
)

// fieldNames are the fields' default column names, also the names --map
// and the mapping file use.
var fieldNames = [numFields]string{
	fContact: "contact", fPurpose: "purpose", fStatus: "status", fMethod: "method",
	fSource: "source", fThirdParty: "third_party", fCapturedAt: "captured_at",
	fLastEngagedAt: "last_engaged_at", fNotice: "notice_version", fEvidence: "evidence_ref",
	fBundled: "bundled",
}

func fieldByName(name string) (field, bool) {
	for f, n := range fieldNames {
		if n == name {
			return field(f), true
		}
	}
	return 0, false
}

// maxFutureSkew is how far ahead a date may be, as consentd allows for a
// client clock running fast.
const maxFutureSkew = 5 * time.Minute

// earliestDate is the oldest captured_at consentd accepts.
var earliestDate = time.Date(1990, 1, 1, 0, 0, 0, 0, time.UTC)

// status is what the old system says about one (contact, purpose).
type status uint8

const (
	statusUnknown status = iota // an empty cell: no record for this purpose
	statusGranted
	statusWithdrawn
)

// shared is what one input record says, parsed, apart from purpose and
// status: with purpose columns, every (contact, purpose) of a record shares
// it.
type shared struct {
	contact string // as given, for the re-permission lists
	key     string // trimmed: what is checked, written and hashed
	method  consent.Method
	// source is resolved: first party unless the file says third party or
	// names one.
	source      consent.Source
	thirdParty  string
	captured    time.Time // zero: not given
	lastEngaged time.Time
	notice      string
	evidence    string
	bundled     bool
	// reject, when set, names the column and what is wrong with it: every
	// (contact, purpose) of the record is rejected.
	reject string
}

// row is one (contact, purpose) of the input: the unit that gets exactly
// one outcome.
type row struct {
	line    int
	purpose string
	status  status
	reject  string
	// salt is consentd's request id salt for the contact and this caller
	// (BatchCheck), set before the row is written. It is the row's own,
	// not shared's: a record's rows can sit in batches that workers
	// process at once.
	salt []byte
	*shared
}

// parseShared parses a record's columns other than purpose and status.
// now bounds the dates (at most maxFutureSkew ahead).
func parseShared(raw *[numFields]string, now time.Time) *shared {
	s := &shared{contact: raw[fContact], key: strings.TrimSpace(raw[fContact])}
	s.reject = s.parse(raw, now)
	return s
}

func (s *shared) parse(raw *[numFields]string, now time.Time) string {
	if !isEmail(s.key) && !isPhone(s.key) {
		return "contact: not an email address or E.164 phone number"
	}
	if m := lowerTrim(raw[fMethod]); m != "" {
		v, ok := pb.Method_value["METHOD_"+strings.ToUpper(m)]
		if !ok || !consent.Method(v).Valid() || strings.ContainsAny(m, " -") {
			return fmt.Sprintf("method: unknown method %q (known: %s)", raw[fMethod], strings.Join(methodNames(false), ", "))
		}
		s.method = consent.Method(v)
	}
	s.thirdParty = strings.TrimSpace(raw[fThirdParty])
	s.notice = strings.TrimSpace(raw[fNotice])
	s.evidence = strings.TrimSpace(raw[fEvidence])
	switch src := lowerTrim(raw[fSource]); src {
	case "":
		s.source = consent.SourceFirstParty
		if s.thirdParty != "" {
			s.source = consent.SourceThirdParty
		}
	case "first_party":
		if s.thirdParty != "" {
			return fmt.Sprintf("third_party: names %q but source is first_party", s.thirdParty)
		}
		s.source = consent.SourceFirstParty
	case "third_party":
		s.source = consent.SourceThirdParty
	default:
		return fmt.Sprintf("source: unknown source %q (known: first_party, third_party)", raw[fSource])
	}
	// consentd refuses labels it cannot store; refusing them here keeps one
	// bad cell from failing a whole batch.
	for _, l := range []struct {
		f field
		v string
	}{{fThirdParty, s.thirdParty}, {fNotice, s.notice}, {fEvidence, s.evidence}} {
		if err := consent.CheckLabel(fieldNames[l.f], l.v); err != nil {
			return err.Error()
		}
	}
	var err string
	if s.captured, err = parseDate(fCapturedAt, raw[fCapturedAt], now); err != "" {
		return err
	}
	if !s.captured.IsZero() && s.captured.Before(earliestDate) {
		return fmt.Sprintf("captured_at: %q is before %s", raw[fCapturedAt], earliestDate.Format(time.DateOnly))
	}
	if s.lastEngaged, err = parseDate(fLastEngagedAt, raw[fLastEngagedAt], now); err != "" {
		return err
	}
	switch b := lowerTrim(raw[fBundled]); b {
	case "", "false":
	case "true":
		s.bundled = true
	default:
		return fmt.Sprintf("bundled: %q is not true, false or empty", raw[fBundled])
	}
	return ""
}

// parseStatus reads a status cell.
func parseStatus(f field, cell string) (status, string) {
	switch lowerTrim(cell) {
	case "":
		return statusUnknown, ""
	case "granted":
		return statusGranted, ""
	case "withdrawn":
		return statusWithdrawn, ""
	}
	return 0, fmt.Sprintf("%s: unknown status %q (want granted, withdrawn or empty)", fieldNames[f], cell)
}

func lowerTrim(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// parseDate reads a date cell: RFC 3339, or YYYY-MM-DD (midnight UTC).
func parseDate(f field, cell string, now time.Time) (time.Time, string) {
	s := strings.TrimSpace(cell)
	if s == "" {
		return time.Time{}, ""
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		if t, err = time.Parse(time.DateOnly, s); err != nil {
			return time.Time{}, fmt.Sprintf("%s: cannot parse %q (want RFC 3339 or YYYY-MM-DD)", fieldNames[f], cell)
		}
	}
	if t.After(now.Add(maxFutureSkew)) {
		return time.Time{}, fmt.Sprintf("%s: %q is in the future", fieldNames[f], cell)
	}
	return t.UTC(), ""
}

// isEmail is a deliberately plain test: one @, a local part of 1 to 64
// bytes, a domain with a dot, no spaces or control characters, and nothing
// consentd would refuse as a contact.
func isEmail(s string) bool {
	at := strings.IndexByte(s, '@')
	if at <= 0 || at > 64 || strings.IndexByte(s[at+1:], '@') >= 0 || len(s) > consent.MaxContactBytes || !utf8.ValidString(s) {
		return false
	}
	domain := s[at+1:]
	dot := strings.IndexByte(domain, '.')
	if dot <= 0 || dot == len(domain)-1 {
		return false
	}
	for _, r := range s {
		if r <= ' ' || r == 0x7f || (r >= 0x80 && r <= 0x9f) || r == '\u00a0' || r == '\u2028' || r == '\u2029' {
			return false
		}
	}
	return consent.CheckContact(s) == nil
}

// isPhone reports whether s is an E.164 number: + and 8 to 15 digits.
func isPhone(s string) bool {
	if len(s) < 9 || len(s) > 16 || s[0] != '+' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// outcome is what the import does with one (contact, purpose).
type outcome uint8

const (
	outRejected outcome = iota
	outSuppressed
	outWithdrawn
	outValid
	// The re-permission reasons, in the order they are checked.
	outNoRecord
	outMethodUnrecorded
	outThirdParty
	outNotSpecific
	outStale
	numOutcomes
)

// repermission lists the re-permission outcomes with their names in the
// report and in segment file names.
var repermission = []struct {
	o    outcome
	name string
}{
	{outNoRecord, "no_record"}, {outMethodUnrecorded, "method_unrecorded"},
	{outThirdParty, "third_party"}, {outNotSpecific, "not_specific"}, {outStale, "stale"},
}

// classify decides a parsed, not rejected row by the old system's word
// alone: withdrawn, valid or a re-permission reason. Whether the contact was
// erased here before (suppressed) is consentd's to say.
func classify(r *row, p *consent.Purpose, now time.Time) outcome {
	switch {
	case r.status == statusWithdrawn:
		return outWithdrawn
	case r.status == statusUnknown:
		return outNoRecord
	case r.method == consent.MethodUnspecified:
		return outMethodUnrecorded
	case r.source == consent.SourceThirdParty && !p.ThirdPartyAllowed:
		return outThirdParty
	case r.bundled:
		return outNotSpecific
	case r.captured.IsZero():
		return outStale
	case p.ReconfirmMonths > 0 && !r.lastEngaged.IsZero() && !now.Before(r.lastEngaged.AddDate(0, p.ReconfirmMonths, 0)):
		return outStale
	}
	// The rest is Check's own rule, applied to the record this grant would
	// make on its own.
	rec, err := consent.Apply(consent.Record{}, consent.Event{Kind: consent.EventGrant, Purposes: []string{p.Name}, Proof: r.proof()})
	if err != nil {
		return outStale // unreachable: an empty record takes any grant
	}
	switch d := consent.Decide(&rec, p, now); d.Reason {
	case consent.ReasonGranted:
		return outValid
	case consent.ReasonThirdPartyUnconfirmed:
		return outThirdParty
	case consent.ReasonNotSpecific:
		return outNotSpecific
	case consent.ReasonNoConsent:
		return outMethodUnrecorded
	}
	return outStale
}

func (r *row) proof() consent.Proof {
	return consent.Proof{Method: r.method, Source: r.source, ThirdParty: r.thirdParty,
		EvidenceRef: r.evidence, NoticeVersion: r.notice, CapturedAt: r.captured, Bundled: r.bundled}
}

// requestID derives the write's request id from what the write carries and
// nothing else (no clock), so the same row, in a re-run or twice in a file,
// is the same request and applies once. Request ids are one space per
// caller, so rows alike but for their contacts need ids apart: the
// contact's salt, which consentd derives from its keyed hash, tells them
// apart.
func (r *row) requestID(kind string) string {
	captured := ""
	if !r.captured.IsZero() {
		captured = r.captured.Format(time.RFC3339Nano)
	}
	method := ""
	if r.method != consent.MethodUnspecified {
		method = enumName(pb.Method(r.method).String(), "METHOD_")
	}
	source := ""
	if kind == "grant" {
		source = enumName(pb.Source(r.source).String(), "SOURCE_")
	}
	h := sha256.New()
	// Not the contact: an unkeyed hash of a contact in the history would
	// let anyone holding it confirm a guessed address. Its salt instead,
	// the same for the same person written with other case or spacing, in
	// another row or in a later export.
	for i, s := range []string{r.purpose, kind, method, source, r.thirdParty, captured, r.notice, r.evidence, string(r.salt)} {
		if i > 0 {
			h.Write([]byte{0})
		}
		h.Write([]byte(s))
	}
	var sum [sha256.Size]byte
	return "import-" + hex.EncodeToString(h.Sum(sum[:0])[:16])
}

// write is the write an imported row makes: a Grant for a valid row, a
// Withdraw for a withdrawn one.
func (r *row) write(o outcome, actor string) *pb.BatchWrite {
	var captured *timestamppb.Timestamp
	if !r.captured.IsZero() {
		captured = timestamppb.New(r.captured)
	}
	if o == outWithdrawn {
		// No captured_at leaves the date to consentd (now): an opt-out is
		// never lost to an older grant.
		return &pb.BatchWrite{Write: &pb.BatchWrite_Withdraw{Withdraw: &pb.WithdrawRequest{
			Contact: r.key, Purposes: []string{r.purpose}, Method: pb.Method(r.method),
			CapturedAt: captured, Actor: actor, RequestId: r.requestID("withdraw"),
		}}}
	}
	return &pb.BatchWrite{Write: &pb.BatchWrite_Grant{Grant: &pb.GrantRequest{
		Contact: r.key, Purposes: []string{r.purpose}, Method: pb.Method(r.method),
		Source: pb.Source(r.source), ThirdParty: r.thirdParty, EvidenceRef: r.evidence,
		NoticeVersion: r.notice, CapturedAt: captured, Actor: actor, RequestId: r.requestID("grant"),
	}}}
}
