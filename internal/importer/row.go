package importer

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/consentd/consentd/consent"
	"github.com/consentd/consentd/internal/identifier"
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

// shared is what one input record says, parsed, apart from purpose and
// status: with purpose columns, every (contact, purpose) of a record shares
// it.
type shared struct {
	contact string // as given, for the re-permission lists
	// key is the contact's canonical form (internal/identifier): what is
	// written and hashed, so that two spellings of one identifier in a
	// file are one contact, as they are to consentd.
	key    string
	method consent.Method
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
	status  consent.ClaimStatus
	reject  string
	// salt is consentd's request id salt for the contact and this caller
	// (BatchCheck), set before the row is written. It is the row's own,
	// not shared's: a record's rows can sit in batches that workers
	// process at once.
	salt []byte
	*shared
}

// parseShared parses a record's columns other than purpose and status.
// now bounds the dates (at most maxFutureSkew ahead); ids parses the
// contact.
func parseShared(raw *[numFields]string, now time.Time, ids identifier.Parser) *shared {
	s := &shared{contact: raw[fContact]}
	s.reject = s.parse(raw, now, ids)
	return s
}

func (s *shared) parse(raw *[numFields]string, now time.Time, ids identifier.Parser) string {
	// The one rule for a contact, consentd's own: a row that passes is
	// one consentd takes.
	id, perr := ids.Parse(s.contact)
	if perr != nil {
		return fieldNames[fContact] + ": " + perr.Error()
	}
	s.key = id.Canonical
	if m := lowerTrim(raw[fMethod]); m != "" {
		v, ok := pb.Method_value["METHOD_"+strings.ToUpper(m)]
		if !ok || !consent.Method(v).Valid() || strings.ContainsAny(m, " -") {
			return fmt.Sprintf("method: unknown method %q (known: %s)", raw[fMethod], strings.Join(methodNames(), ", "))
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

// parseStatus reads a status cell; an empty one says nothing about the
// purpose.
func parseStatus(f field, cell string) (consent.ClaimStatus, string) {
	switch lowerTrim(cell) {
	case "":
		return consent.ClaimNone, ""
	case "granted":
		return consent.ClaimGranted, ""
	case "withdrawn":
		return consent.ClaimWithdrawn, ""
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

// outcome is what the import does with one (contact, purpose): one of two
// of its own, decided before the claim is looked at, or one of consent's
// classes.
type outcome uint8

const (
	// outRejected: the row is malformed, and never consent. It is the zero
	// outcome, so a row never decided is never written.
	outRejected outcome = iota
	// outSuppressed: consentd says the contact was erased here before.
	outSuppressed
	numOwn

	outValid            = numOwn + outcome(consent.ClassValid)
	outWithdrawn        = numOwn + outcome(consent.ClassWithdrawn)
	outNoRecord         = numOwn + outcome(consent.ClassNoRecord)
	outMethodUnrecorded = numOwn + outcome(consent.ClassMethodUnrecorded)
	outThirdParty       = numOwn + outcome(consent.ClassThirdPartyUnconfirmed)
	outNotSpecific      = numOwn + outcome(consent.ClassNotSpecific)
	outStale            = numOwn + outcome(consent.ClassStale)
	numOutcomes         = outStale + 1
)

// repermission lists the re-permission outcomes, in the report's order.
var repermission = []outcome{outNoRecord, outMethodUnrecorded, outThirdParty, outNotSpecific, outStale}

// asks reports whether o puts the row on a re-permission list: the person
// must be asked again.
func (o outcome) asks() bool { return o >= outNoRecord && o <= outStale }

// String is o's name in the report and in segment file names.
func (o outcome) String() string {
	switch o {
	case outSuppressed:
		return "suppressed"
	case outRejected:
		return "rejected"
	}
	return consent.Class(o - numOwn).String()
}

// classify decides a parsed, not rejected row by the old system's word
// alone (consent.Classify). Whether the contact was erased here before
// (suppressed) is consentd's to say.
func (r *row) classify(p *consent.Purpose, now time.Time) outcome {
	return numOwn + outcome(consent.Classify(&consent.Claim{Status: r.status, Proof: r.proof(), LastEngagedAt: r.lastEngaged}, p, now))
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

// methodNames lists the methods a file may name: the wire's names without
// their prefix, in lower case.
func methodNames() []string {
	var names []string
	for m := consent.MethodUnspecified + 1; m.Valid(); m++ {
		names = append(names, enumName(pb.Method(m).String(), "METHOD_"))
	}
	return names
}

// enumName is a wire enum name without its prefix, in lower case
// ("double_opt_in", "first_party"): the names a file uses.
func enumName(full, prefix string) string {
	return strings.ToLower(strings.TrimPrefix(full, prefix))
}
