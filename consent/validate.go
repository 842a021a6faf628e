package consent

import (
	"unicode"
	"unicode/utf8"
)

// Limits on what a request may carry.
const (
	MaxContactBytes = 320 // the most a contact may hold as sent (internal/identifier parses it)
	MaxLabelBytes   = 256 // actor, evidence_ref, notice_version, third_party, request_id
	MaxBatch        = 10000
)

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
