// Package identifier owns what a contact is: it parses the identifier a
// sender knows a person by (an email address, a phone number, or an id in
// the sender's own system) into one canonical spelling, so that every
// spelling of one identifier is one key. Every entry point parses through
// it (by way of contactkey.Keyer): a grant written as "+44 20 7946 0958"
// and a withdrawal written as "+442079460958" must land on one record, or
// the withdrawal is lost.
//
// The canonical forms, which are disjoint by syntax so no two kinds can
// ever share a key:
//
//   - email: the whole address lower-cased (as ESPs and ad platforms match),
//     NFC, the domain in ASCII (IDN labels as punycode): ada@xn--bcher-kva.example.
//     Always holds an '@' and never a ':' (neither the dot-atom local part
//     of RFC 5322 nor a domain name may hold one).
//   - phone: E.164, "+" and digits: +442079460958. Never an '@' or a ':'.
//   - external: namespace:id (crm:12345), the namespace lower-cased, the id
//     kept as given. Always a ':' and never starts with '+'.
//
// Nothing provider-specific is folded: Gmail's dots and +tags stay
// distinct addresses, since a rule right for one provider merges two
// people at another. Postal addresses are not identifiers here: they have
// no canonical form (abbreviations, orderings, missing parts), and matching
// them loosely would let a withdrawal written one way miss a grant written
// another, the very loss this package exists to prevent.
package identifier

import (
	"errors"
	"strings"
	"sync/atomic"
	"unicode"
	"unicode/utf8"

	"github.com/nyaruka/phonenumbers"
	"golang.org/x/net/idna"
	"golang.org/x/text/unicode/norm"

	"github.com/consentd/consentd/consent"
)

// Limits. MaxInputBytes bounds what is parsed at all, before trimming: the
// longest address RFC 5321 allows, with room for spaces around it.
const (
	MaxInputBytes  = consent.MaxContactBytes
	MaxEmailBytes  = 254 // RFC 5321 4.5.3.1.3, a path of 256 less its brackets
	MaxLocalBytes  = 64  // RFC 5321 4.5.3.1.1
	MaxDomainBytes = 255 // RFC 5321 4.5.3.1.2
	MaxLabelBytes  = 63  // RFC 1035 2.3.4
	MaxNamespace   = 32
	MaxExternalID  = 128
)

// The reasons an identifier is refused: plain problem texts, the caller
// prefixes the field ("contact: ..."). They are values, so a refusal on the
// hot path allocates nothing.
var (
	ErrEmpty          = errors.New("must not be empty")
	ErrTooLong        = errors.New("must be at most 320 bytes")
	ErrUTF8           = errors.New("must be valid UTF-8")
	ErrControl        = errors.New("must not contain control characters")
	ErrInvisible      = errors.New("must not contain invisible or bidirectional control characters (zero-width, bidi marks)")
	ErrUnassigned     = errors.New("must not contain unassigned or private-use characters")
	ErrForm           = errors.New("not an email address or phone number")
	ErrDisplayName    = errors.New("must be a bare email address, without a display name (ada@example.com, not Ada <ada@example.com>)")
	ErrQuoted         = errors.New("email addresses with a quoted local part are not supported")
	ErrSpace          = errors.New("must not contain spaces inside an email address")
	ErrAt             = errors.New("email address must have exactly one @")
	ErrLocalEmpty     = errors.New("email address has nothing before the @")
	ErrLocalChar      = errors.New("email address has a character not allowed before the @")
	ErrLocalLong      = errors.New("email address has more than 64 bytes before the @")
	ErrDomain         = errors.New("email domain is not a valid domain name")
	ErrDomainDot      = errors.New("email domain must have a dot inside it (ada@example.com)")
	ErrDomainLong     = errors.New("email domain is longer than 255 bytes")
	ErrEmailLong      = errors.New("email address is longer than 254 bytes")
	ErrPhoneRegion    = errors.New("phone number without + and country code needs a default region (consentd --default-region, e.g. GB)")
	ErrPhoneInvalid   = errors.New("not a valid phone number")
	ErrPhoneCountry   = errors.New("not a valid phone number: unknown country code")
	ErrPhoneExtension = errors.New("phone number must not have an extension")
	ErrNamespace      = errors.New("external id namespace must be a letter then up to 31 letters, digits, _ or - (crm:12345)")
	ErrNamespaceURI   = errors.New("external id namespace must not be mailto, tel or sms: give the email address or phone number itself")
	ErrExternalID     = errors.New("external id must be 1 to 128 bytes of printable ASCII without spaces after the namespace (crm:12345)")
)

// ErrRegion is returned by CheckRegion.
var ErrRegion = errors.New("not a known region code (a CLDR region such as GB, US, DE)")

// ID is a parsed identifier.
type ID struct {
	Kind      consent.IDKind
	Canonical string
}

// Parser parses identifiers. The zero Parser accepts phone numbers only in
// international form (+ and country code).
type Parser struct {
	// DefaultRegion is the CLDR region (GB) a phone number written without
	// + and a country code is read in; "" refuses such numbers. Check it
	// with CheckRegion when it is configured.
	DefaultRegion string
	// Known, when set, remembers the E.164 numbers already accepted, so
	// that one seen before skips the phone library (see Known).
	Known *Known
}

// CheckRegion reports whether region is one phone numbers can be read in.
func CheckRegion(region string) error {
	if region == "" || !phonenumbers.GetSupportedRegions()[region] {
		return ErrRegion
	}
	return nil
}

// Parse returns s's kind and canonical form, or why it is not an
// identifier. Parse(id.Canonical) returns id again.
func (p Parser) Parse(s string) (ID, error) {
	if err := checkChars(s); err != nil {
		return ID{}, err
	}
	s = strings.TrimSpace(s)
	if s == "" {
		return ID{}, ErrEmpty
	}
	if ns, id, ok := splitExternal(s); ok {
		return external(ns, id)
	}
	if strings.IndexByte(s, '@') >= 0 || strings.IndexByte(s, '<') >= 0 {
		return email(s)
	}
	if looksLikePhone(s) {
		return p.phone(s)
	}
	return ID{}, ErrForm
}

// checkChars refuses what no identifier may hold anywhere, spaces around it
// included: a zero-width or bidi character around a contact is as much an
// attempt to make two spellings of one person as one inside it.
func checkChars(s string) error {
	if len(s) > MaxInputBytes {
		return ErrTooLong
	}
	ascii := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= utf8.RuneSelf {
			ascii = false
			continue
		}
		if c < 0x20 && c != '\t' && c != '\n' && c != '\r' || c == 0x7f {
			return ErrControl
		}
	}
	if ascii {
		return nil
	}
	if !utf8.ValidString(s) {
		return ErrUTF8
	}
	for _, r := range s {
		switch {
		case r < utf8.RuneSelf:
		case invisible(r):
			return ErrInvisible
		case unicode.IsControl(r):
			return ErrControl
		case unicode.Is(unicode.Co, r) || !assigned(r):
			// An unassigned code point may be given a normalisation
			// later, which would change its canonical form and so its
			// key.
			return ErrUnassigned
		}
	}
	return nil
}

// invisible reports the characters that change a string without changing
// what a reader sees: format characters (Cf: zero-width space and joiners,
// bidi marks, embeddings and isolates, the BOM, soft hyphen), variation
// selectors and the other default-ignorable code points (combining
// grapheme joiner, Hangul fillers).
func invisible(r rune) bool {
	return unicode.In(r, unicode.Cf, unicode.Variation_Selector, unicode.Other_Default_Ignorable_Code_Point)
}

func assigned(r rune) bool {
	return unicode.In(r, unicode.L, unicode.M, unicode.N, unicode.P, unicode.S, unicode.Z, unicode.C)
}

// splitExternal reports whether s is written namespace:id. An email address
// cannot be (see the package comment), and a phone number has no letters.
// A ':' after something that cannot be a namespace, in what has an '@',
// leaves s to be refused as an email address, which says more.
func splitExternal(s string) (ns, id string, ok bool) {
	colon := strings.IndexByte(s, ':')
	if colon < 0 {
		return "", "", false
	}
	ns, id = s[:colon], s[colon+1:]
	if strings.IndexByte(s, '@') >= 0 && !isNamespace(ns) {
		return "", "", false
	}
	return ns, id, true
}

func isNamespace(ns string) bool {
	if len(ns) == 0 || len(ns) > MaxNamespace || !isLetter(ns[0]) {
		return false
	}
	for i := 1; i < len(ns); i++ {
		if c := ns[i]; !isLetter(c) && !isDigit(c) && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

func external(ns, id string) (ID, error) {
	if !isNamespace(ns) {
		return ID{}, ErrNamespace
	}
	ns = strings.ToLower(ns)
	switch ns {
	case "mailto", "tel", "sms":
		// crm-style ids are opaque, so tel:+44... would be a second key
		// for a number: refused rather than a withdrawal lost to it.
		return ID{}, ErrNamespaceURI
	}
	if len(id) == 0 || len(id) > MaxExternalID {
		return ID{}, ErrExternalID
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c >= 0x7f {
			return ID{}, ErrExternalID
		}
	}
	return ID{Kind: consent.IDExternal, Canonical: ns + ":" + id}, nil
}

func isLetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isDigit(c byte) bool  { return '0' <= c && c <= '9' }

// email parses a trimmed address with no control or invisible characters.
func email(s string) (ID, error) {
	switch {
	case strings.ContainsAny(s, "<>"):
		return ID{}, ErrDisplayName
	case strings.IndexByte(s, '"') >= 0:
		return ID{}, ErrQuoted
	case hasSpace(s):
		return ID{}, ErrSpace
	}
	at := strings.IndexByte(s, '@')
	if at < 0 || strings.IndexByte(s[at+1:], '@') >= 0 {
		return ID{}, ErrAt
	}
	if at == 0 {
		return ID{}, ErrLocalEmpty
	}
	// Lower-case before NFC: lower-casing can undo a composition (Greek
	// with combining marks), and the result must be its own normal form.
	s = norm.NFC.String(strings.ToLower(s))
	at = strings.IndexByte(s, '@')
	local, domain := s[:at], s[at+1:]
	if len(local) > MaxLocalBytes {
		return ID{}, ErrLocalLong
	}
	for i := 0; i < len(local); i++ {
		// RFC 5322 atext and dots, or UTF-8 (RFC 6531). Dots are not held
		// to dot-atom's placement: some carriers issued a..b@ addresses,
		// and refusing a real person's address protects no one.
		if c := local[i]; c < utf8.RuneSelf && !isAtext(c) && c != '.' {
			return ID{}, ErrLocalChar
		}
	}
	d, err := asciiDomain(domain)
	if err != nil {
		return ID{}, err
	}
	if len(d) != len(domain) || d != domain {
		s = local + "@" + d
	}
	if len(s) > MaxEmailBytes {
		return ID{}, ErrEmailLong
	}
	return ID{Kind: consent.IDEmail, Canonical: s}, nil
}

func hasSpace(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == ' ' || '\t' <= c && c <= '\r':
			return true
		case c >= utf8.RuneSelf:
			for _, r := range s[i:] {
				if unicode.IsSpace(r) || unicode.Is(unicode.Z, r) {
					return true
				}
			}
			return false
		}
	}
	return false
}

// isAtext is RFC 5322's atext in ASCII.
func isAtext(c byte) bool {
	if isLetter(c) || isDigit(c) {
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '/', '=', '?', '^', '_', '`', '{', '|', '}', '~':
		return true
	}
	return false
}

// asciiDomain returns the ASCII form of a lower-cased domain (IDNA2008
// lookup, UTS 46 non-transitional), or why it is not a domain name.
func asciiDomain(d string) (string, error) {
	if d == "" {
		return "", ErrDomain
	}
	if !plainLDH(d) {
		a, err := idna.Lookup.ToASCII(d)
		if err != nil {
			return "", ErrDomain
		}
		d = a
	} else if err := checkHyphens(d); err != nil {
		return "", err
	}
	return d, checkLabels(d)
}

// plainLDH reports whether d is letters, digits, hyphens and dots, none of
// its labels punycode: the domains IDNA lookup leaves as they are, so the
// common case skips it (it allocates). TestFastDomain and FuzzParse hold
// the two paths equal.
func plainLDH(d string) bool {
	for i := 0; i < len(d); i++ {
		c := d[i]
		if !('a' <= c && c <= 'z' || isDigit(c) || c == '-' || c == '.') {
			return false
		}
		if c == 'x' && (i == 0 || d[i-1] == '.') && strings.HasPrefix(d[i:], "xn--") {
			return false
		}
	}
	return true
}

// checkHyphens is UTS 46's CheckHyphens, which IDNA lookup applies: no
// label starts or ends with a hyphen, or has hyphens third and fourth.
func checkHyphens(d string) error {
	for label := range strings.SplitSeq(d, ".") {
		if label == "" {
			continue // checkLabels' to refuse
		}
		if label[0] == '-' || label[len(label)-1] == '-' || len(label) >= 4 && label[2] == '-' && label[3] == '-' {
			return ErrDomain
		}
	}
	return nil
}

// checkLabels holds an ASCII domain to DNS's lengths, and to having a dot
// inside: a dotless domain is a local name, not an address on the internet.
func checkLabels(d string) error {
	if len(d) > MaxDomainBytes {
		return ErrDomainLong
	}
	labels := 0
	for label := range strings.SplitSeq(d, ".") {
		if label == "" || len(label) > MaxLabelBytes {
			return ErrDomain
		}
		labels++
	}
	if labels < 2 {
		return ErrDomainDot
	}
	return nil
}

// looksLikePhone reports whether s is written as a phone number: digits,
// and the punctuation people write numbers with, opening with +, ( or a
// digit. Letters (vanity numbers, "ext.") are not taken.
func looksLikePhone(s string) bool {
	if s[0] != '+' && s[0] != '(' && !isDigit(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isDigit(c) && strings.IndexByte(" -.()/", c) < 0 {
			return false
		}
	}
	return true
}

func (p Parser) phone(s string) (ID, error) {
	v, canonical := e164Value(s)
	if canonical && p.Known.has(v) {
		return ID{Kind: consent.IDPhone, Canonical: s}, nil
	}
	region := p.DefaultRegion
	if s[0] == '+' {
		region = "ZZ" // the number names its country
	} else if region == "" {
		return ID{}, ErrPhoneRegion
	}
	n, err := phonenumbers.Parse(s, region)
	switch {
	case errors.Is(err, phonenumbers.ErrInvalidCountryCode):
		return ID{}, ErrPhoneCountry
	case err != nil:
		return ID{}, ErrPhoneInvalid
	case n.GetExtension() != "":
		return ID{}, ErrPhoneExtension
	case !phonenumbers.IsValidNumber(n):
		return ID{}, ErrPhoneInvalid
	}
	c := phonenumbers.Format(n, phonenumbers.E164)
	if canonical && c == s {
		p.Known.add(v)
	}
	return ID{Kind: consent.IDPhone, Canonical: c}, nil
}

// Known is a fixed-size memo of the E.164 numbers the phone library has
// accepted as written: parsing and validating one costs tens of
// microseconds and dozens of allocations (regular expressions over the
// numbering plans), against a few hundred nanoseconds for the keyed hash,
// and an audience of stored E.164 numbers passes the same numbers again
// and again. It holds only what the library accepted, and a number's
// validity depends on nothing but the number (+ names its country), so a
// hit answers exactly as the library would. Slots are overwritten on
// collision: memory stays fixed (8 bytes a slot) and a miss only costs
// the library's answer again. Safe for concurrent use, without locks.
type Known struct {
	slots []atomic.Uint64
	shift uint
}

// NewKnown returns a memo of 2^bits slots (bits from 4 to 24).
func NewKnown(bits uint) *Known {
	bits = min(max(bits, 4), 24)
	return &Known{slots: make([]atomic.Uint64, 1<<bits), shift: 64 - bits}
}

// e164Value reads s as a canonical E.164 number: + and 1 to 15 digits, the
// first not 0. The value tells such numbers apart: no leading zero.
func e164Value(s string) (uint64, bool) {
	if len(s) < 2 || len(s) > 16 || s[0] != '+' || s[1] == '0' {
		return 0, false
	}
	var v uint64
	for i := 1; i < len(s); i++ {
		if !isDigit(s[i]) {
			return 0, false
		}
		v = v*10 + uint64(s[i]-'0')
	}
	return v, true
}

func (k *Known) slot(v uint64) *atomic.Uint64 {
	return &k.slots[(v*0x9e3779b97f4a7c15)>>k.shift]
}

func (k *Known) has(v uint64) bool {
	// Stored as v+1, so an empty slot (0) matches no number.
	return k != nil && k.slot(v).Load() == v+1
}

func (k *Known) add(v uint64) {
	if k != nil {
		k.slot(v).Store(v + 1)
	}
}
