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
		{"phone", "+442079460000", nil},
		{"unicode", "zoë@例え.jp", nil},
		{"surrounding spaces", "  ada@example.com\n", nil},
		{"local part of 64", strings.Repeat("x", 64) + "@example.com", nil},
		{"shortest phone", "+12345678", nil},
		{"longest phone", "+123456789012345", nil},
		{"empty", "", consent.ErrContactEmpty},
		{"only spaces", " \t\n ", consent.ErrContactEmpty},
		{"exactly 320 bytes", strings.Repeat("a", 64) + "@" + strings.Repeat("b", 251) + ".com", nil},
		{"321 bytes", strings.Repeat("a", 64) + "@" + strings.Repeat("b", 252) + ".com", consent.ErrContactTooLong},
		{"invalid UTF-8", "ada\xff@example.com", consent.ErrContactUTF8},
		{"NUL inside", "ada\x00@example.com", consent.ErrContactControl},
		{"newline inside", "ada\n@example.com", consent.ErrContactControl},
		{"DEL", "ada\x7f", consent.ErrContactControl},
		{"C1 control", "ada\u0085x", consent.ErrContactControl},
		// The form: an email address or an E.164 phone number, nothing else.
		{"a space for the @", "ada example.com", consent.ErrContactForm},
		{"a CRM id", "crm:12345", consent.ErrContactForm},
		{"no @", "jo.example.com", consent.ErrContactForm},
		{"two @", "jo@@example.com", consent.ErrContactForm},
		{"nothing before the @", "@example.com", consent.ErrContactForm},
		{"no dot in the domain", "jo@localhost", consent.ErrContactForm},
		{"domain starts with a dot", "jo@.example.com", consent.ErrContactForm},
		{"domain ends with a dot", "jo@example.", consent.ErrContactForm},
		{"space inside", "jo smith@example.com", consent.ErrContactForm},
		{"no-break space inside", "jo\u00a0smith@example.com", consent.ErrContactForm},
		{"line separator inside", "jo\u2028@example.com", consent.ErrContactForm},
		{"local part over 64", strings.Repeat("x", 65) + "@example.com", consent.ErrContactForm},
		{"phone with spaces", "+44 20 7946 0000", consent.ErrContactForm},
		{"phone too short", "+1234567", consent.ErrContactForm},
		{"phone too long", "+1234567890123456", consent.ErrContactForm},
		{"phone without +", "4915112345678", consent.ErrContactForm},
		{"phone with a letter", "+4915112345x78", consent.ErrContactForm},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := consent.CheckContact(tt.contact); got != tt.want {
				t.Errorf("CheckContact(%q) = %v, want %v", tt.contact, got, tt.want)
			}
		})
	}
}

// TestCheckContactAllocatesNothing: CheckContact is on the path of every
// Check, accepting or refusing.
func TestCheckContactAllocatesNothing(t *testing.T) {
	for _, contact := range []string{" Zoë.Tester@Example.com ", "+4915112345678", "ada example.com", "ada\x00@example.com"} {
		if n := testing.AllocsPerRun(100, func() { consent.CheckContact(contact) }); n != 0 {
			t.Errorf("CheckContact(%q) allocates %v times, want 0", contact, n)
		}
	}
}

func FuzzCheckContact(f *testing.F) {
	for _, s := range []string{"ada@example.com", "", " ", "\xff", "a\x00b", strings.Repeat("é", 200),
		"ada example.com", "+4915112345678", " +44 20 7946 0000", "jo@b.c.", "é@例え.jp", "a@b@c.d", "x@y\u2029.z"} {
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
		c := strings.TrimSpace(s)
		for _, r := range c {
			if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
				t.Fatalf("CheckContact(%q) accepted control character %U", s, r)
			}
		}
		// And it is an email address or an E.164 number, nothing between.
		local, domain, isEmail := strings.Cut(c, "@")
		switch {
		case isEmail:
			if local == "" || len(local) > 64 || strings.Contains(domain, "@") || strings.ContainsAny(c, " \u00a0\u2028\u2029") {
				t.Fatalf("CheckContact(%q) accepted a malformed email address", s)
			}
			if name, _, ok := strings.Cut(domain, "."); !ok || name == "" || strings.HasSuffix(domain, ".") && strings.Count(domain, ".") == 1 {
				t.Fatalf("CheckContact(%q) accepted a domain without a dot inside", s)
			}
		default:
			digits := strings.TrimPrefix(c, "+")
			if len(digits) == len(c) || len(digits) < 8 || len(digits) > 15 || strings.Trim(digits, "0123456789") != "" {
				t.Fatalf("CheckContact(%q) accepted neither an email address nor an E.164 number", s)
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
