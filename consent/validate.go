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
)

// CheckContact reports why contact cannot identify anyone, or nil. It looks at
// the contact as sent, before normalisation.
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
	return nil
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
