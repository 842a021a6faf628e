package consent

import (
	"errors"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits on what a request may carry.
const (
	MaxContactBytes = 320 // the longest valid email address
	MaxLabelBytes   = 256 // actor, evidence_ref, notice_version, third_party, request_id
	MaxBatch        = 10000
)

// Reasons a contact is refused. They are values, not formatted strings, so the
// hot path allocates nothing when it refuses.
var (
	ErrContactEmpty   = errors.New("must not be empty")
	ErrContactTooLong = errors.New("must be at most 320 bytes")
	ErrContactUTF8    = errors.New("must be valid UTF-8")
	ErrContactControl = errors.New("must not contain control characters")
	ErrContactForm    = errors.New("not an email address or E.164 phone number")
)

// CheckContact reports why contact cannot identify anyone, or nil: it must
// be an email address or an E.164 phone number. It is the one rule for a
// contact, whoever sends it (a write, a check, an audience, an import). It
// looks at the contact as sent, before normalisation; spaces around it are
// not part of it.
func CheckContact(contact string) error {
	switch {
	case len(contact) > MaxContactBytes:
		return ErrContactTooLong
	case !utf8.ValidString(contact):
		return ErrContactUTF8
	}
	trimmed := strings.TrimSpace(contact)
	if trimmed == "" {
		return ErrContactEmpty
	}
	if hasControl(trimmed) {
		return ErrContactControl
	}
	if !isEmail(trimmed) && !isPhone(trimmed) {
		return ErrContactForm
	}
	return nil
}

// isEmail is a deliberately plain test of a trimmed contact without control
// characters: one @, a local part of 1 to 64 bytes, a domain with a dot
// that neither starts nor ends it, and no spaces. Whether the address
// exists is the sender's to find out.
func isEmail(s string) bool {
	at := strings.IndexByte(s, '@')
	if at <= 0 || at > 64 || strings.IndexByte(s[at+1:], '@') >= 0 {
		return false
	}
	domain := s[at+1:]
	dot := strings.IndexByte(domain, '.')
	if dot <= 0 || dot == len(domain)-1 {
		return false
	}
	for _, r := range s {
		if r == ' ' || r == '\u00a0' || r == '\u2028' || r == '\u2029' {
			return false
		}
	}
	return true
}

// isPhone reports whether s is an E.164 number: + and 8 to 15 digits, with
// nothing between them.
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

// CheckLabel checks a free-text proof field: optional, bounded, printable.
func CheckLabel(field, s string) error {
	switch {
	case len(s) > MaxLabelBytes:
		return Invalid(field, "must be at most %d bytes", MaxLabelBytes)
	case !utf8.ValidString(s):
		return Invalid(field, "must be valid UTF-8")
	case hasControl(s):
		return Invalid(field, "must not contain control characters")
	}
	return nil
}

func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return true
		}
	}
	if isASCII(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return true
		}
	}
	return false
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
