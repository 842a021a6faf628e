package consent_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/consentd/consentd/consent"
)

func TestCheckContact(t *testing.T) {
	tests := []struct {
		name    string
		contact string
		want    error
	}{
		{"email", "ada@example.com", nil},
		{"phone", "+44 20 7946 0000", nil},
		{"unicode", "zoë@例え.jp", nil},
		{"surrounding spaces", "  ada@example.com\n", nil},
		{"empty", "", consent.ErrContactEmpty},
		{"only spaces", " \t\n ", consent.ErrContactEmpty},
		{"exactly 320 bytes", strings.Repeat("a", 320), nil},
		{"321 bytes", strings.Repeat("a", 321), consent.ErrContactTooLong},
		{"invalid UTF-8", "ada\xff@example.com", consent.ErrContactUTF8},
		{"NUL inside", "ada\x00@example.com", consent.ErrContactControl},
		{"newline inside", "ada\n@example.com", consent.ErrContactControl},
		{"DEL", "ada\x7f", consent.ErrContactControl},
		{"C1 control", "ada\u0085x", consent.ErrContactControl},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := consent.CheckContact(tt.contact); got != tt.want {
				t.Errorf("CheckContact(%q) = %v, want %v", tt.contact, got, tt.want)
			}
		})
	}
}

func FuzzCheckContact(f *testing.F) {
	for _, s := range []string{"ada@example.com", "", " ", "\xff", "a\x00b", strings.Repeat("é", 200)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := consent.CheckContact(s)
		if err != nil {
			return
		}
		// Whatever passes is bounded, valid UTF-8, non-empty and printable.
		if len(s) > consent.MaxContactBytes || !utf8.ValidString(s) || strings.TrimSpace(s) == "" {
			t.Fatalf("CheckContact(%q) accepted a malformed contact", s)
		}
		for _, r := range strings.TrimSpace(s) {
			if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
				t.Fatalf("CheckContact(%q) accepted control character %U", s, r)
			}
		}
	})
}

func TestCheckLabel(t *testing.T) {
	tests := []struct {
		value string
		ok    bool
	}{
		{"", true},
		{"form:signup-7", true},
		{strings.Repeat("x", consent.MaxLabelBytes), true},
		{strings.Repeat("x", consent.MaxLabelBytes+1), false},
		{"bad\xff", false},
		{"tab\there", false},
	}
	for _, tt := range tests {
		err := consent.CheckLabel("actor", tt.value)
		if (err == nil) != tt.ok {
			t.Errorf("CheckLabel(%q) = %v, want ok=%v", tt.value, err, tt.ok)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "actor: ") {
			t.Errorf("CheckLabel(%q) = %q, want it to name the field", tt.value, err)
		}
	}
}
