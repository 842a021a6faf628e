package identifier_test

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/consentd/consentd/consent"
	"github.com/consentd/consentd/internal/identifier"
)

func TestParse(t *testing.T) {
	gb := identifier.Parser{DefaultRegion: "GB"}
	none := identifier.Parser{}
	email := func(s string) identifier.ID { return identifier.ID{Kind: consent.IDEmail, Canonical: s} }
	phone := func(s string) identifier.ID { return identifier.ID{Kind: consent.IDPhone, Canonical: s} }
	ext := func(s string) identifier.ID { return identifier.ID{Kind: consent.IDExternal, Canonical: s} }
	tests := []struct {
		name string
		p    identifier.Parser
		in   string
		want identifier.ID
		err  error
	}{
		// Email: one spelling per address.
		{"email canonical", none, "ada@example.com", email("ada@example.com"), nil},
		{"email case", none, "Ada@Example.COM", email("ada@example.com"), nil},
		{"email trimmed", none, "  ada@example.com \n", email("ada@example.com"), nil},
		{"email tab", none, "\tada@example.com", email("ada@example.com"), nil},
		{"email NFC", none, "Zoe\u0308@example.com", email("zo\u00eb@example.com"), nil},
		{"email unicode local", none, "ÉLODIE@EXAMPLE.FR", email("élodie@example.fr"), nil},
		{"email IDN", none, "ada@bücher.example", email("ada@xn--bcher-kva.example"), nil},
		{"email IDN upper", none, "Ada@BÜCHER.example", email("ada@xn--bcher-kva.example"), nil},
		{"email punycode", none, "ada@xn--bcher-kva.example", email("ada@xn--bcher-kva.example"), nil},
		{"email punycode upper", none, "ada@XN--BCHER-KVA.example", email("ada@xn--bcher-kva.example"), nil},
		{"email IDN decomposed", none, "ada@bu\u0308cher.example", email("ada@xn--bcher-kva.example"), nil},
		{"email no provider folding", none, "a.d.a+news@gmail.com", email("a.d.a+news@gmail.com"), nil},
		{"email atext", none, "o'brien!#$%&*/=?^_`{|}~-@example.com", email("o'brien!#$%&*/=?^_`{|}~-@example.com"), nil},
		{"email digits local", none, "12345@example.com", email("12345@example.com"), nil},
		{"email plus local", none, "+442079460958@sms.example", email("+442079460958@sms.example"), nil},
		{"email carrier dots", none, "a..b.@docomo.ne.jp", email("a..b.@docomo.ne.jp"), nil},
		{"email 64-byte local", none, strings.Repeat("a", 64) + "@example.com", email(strings.Repeat("a", 64) + "@example.com"), nil},
		{"email hyphen domain", none, "ada@my-host.example.com", email("ada@my-host.example.com"), nil},
		{"email display name", none, "Ada <ada@example.com>", identifier.ID{}, identifier.ErrDisplayName},
		{"email angle only", none, "<ada@example.com>", identifier.ID{}, identifier.ErrDisplayName},
		{"email quoted", none, `"ada lovelace"@example.com`, identifier.ID{}, identifier.ErrQuoted},
		{"email space inside", none, "ada @example.com", identifier.ID{}, identifier.ErrSpace},
		{"email nbsp inside", none, "ada\u00a0x@example.com", identifier.ID{}, identifier.ErrSpace},
		{"email two @", none, "ada@x@example.com", identifier.ID{}, identifier.ErrAt},
		{"email no local", none, "@example.com", identifier.ID{}, identifier.ErrLocalEmpty},
		{"email comma", none, "ada,b@example.com", identifier.ID{}, identifier.ErrLocalChar},
		{"email colon local", none, "a.b:c@example.com", identifier.ID{}, identifier.ErrLocalChar},
		{"email 65-byte local", none, strings.Repeat("a", 65) + "@example.com", identifier.ID{}, identifier.ErrLocalLong},
		{"email dotless", none, "jo@localhost", identifier.ID{}, identifier.ErrDomainDot},
		{"email empty domain", none, "jo@", identifier.ID{}, identifier.ErrDomain},
		{"email trailing dot", none, "jo@example.com.", identifier.ID{}, identifier.ErrDomain},
		{"email leading dot", none, "jo@.example.com", identifier.ID{}, identifier.ErrDomain},
		{"email double dot", none, "jo@example..com", identifier.ID{}, identifier.ErrDomain},
		{"email underscore", none, "jo@ex_ample.com", identifier.ID{}, identifier.ErrDomain},
		{"email leading hyphen", none, "jo@-example.com", identifier.ID{}, identifier.ErrDomain},
		{"email trailing hyphen", none, "jo@example-.com", identifier.ID{}, identifier.ErrDomain},
		{"email hyphens 3 4", none, "jo@ab--cd.com", identifier.ID{}, identifier.ErrDomain},
		{"email bad punycode", none, "jo@xn--zz-.com", identifier.ID{}, identifier.ErrDomain},
		{"email ascii punycode", none, "jo@xn--abc-.com", identifier.ID{}, identifier.ErrDomain},
		{"email ip literal", none, "jo@[192.0.2.1]", identifier.ID{}, identifier.ErrDomain},
		{"email 64-byte label", none, "jo@" + strings.Repeat("a", 64) + ".com", identifier.ID{}, identifier.ErrDomain},
		{"email long domain", none, "jo@" + strings.Repeat(strings.Repeat("a", 60)+".", 5) + "com", identifier.ID{}, identifier.ErrDomainLong},
		{"email 255 bytes", none, strings.Repeat("a", 64) + "@" + strings.Repeat(strings.Repeat("b", 62)+".", 3) + "com", identifier.ID{}, identifier.ErrEmailLong},
		// Phone: E.164.
		{"phone E.164", none, "+442079460958", phone("+442079460958"), nil},
		{"phone spaced", none, "+44 20 7946 0958", phone("+442079460958"), nil},
		{"phone punctuated", none, "+44 (0)20-7946.0958", phone("+442079460958"), nil},
		{"phone national GB", gb, "020 7946 0958", phone("+442079460958"), nil},
		{"phone national paren", gb, "(020) 7946 0958", phone("+442079460958"), nil},
		{"phone IDD GB", gb, "00 44 20 7946 0958", phone("+442079460958"), nil},
		{"phone foreign with region", gb, "+1 202 555 0100", phone("+12025550100"), nil},
		{"phone US", none, "+1 415 555 2671", phone("+14155552671"), nil},
		{"phone mobile GB", gb, "07911 123456", phone("+447911123456"), nil},
		{"phone Italy leading zero", none, "+39 02 3661 8300", phone("+390236618300"), nil},
		{"phone national no region", none, "020 7946 0958", identifier.ID{}, identifier.ErrPhoneRegion},
		{"phone invalid", none, "+44 20 7946 000", identifier.ID{}, identifier.ErrPhoneInvalid},
		{"phone too short", none, "+4", identifier.ID{}, identifier.ErrPhoneInvalid},
		{"phone unknown country", none, "+999 1234 5678", identifier.ID{}, identifier.ErrPhoneCountry},
		{"phone second plus", none, "+44+2079460958", identifier.ID{}, identifier.ErrForm},
		{"phone letters", gb, "0800-FLOWERS", identifier.ID{}, identifier.ErrForm},
		{"phone extension", gb, "020 7946 0958 ext 12", identifier.ID{}, identifier.ErrForm},
		// External ids: namespace:id.
		{"external", none, "crm:12345", ext("crm:12345"), nil},
		{"external namespace case", none, "CRM:AbC-12345", ext("crm:AbC-12345"), nil},
		{"external trimmed", none, " crm:12345 ", ext("crm:12345"), nil},
		{"external id with @", none, "crm:ada@example.com", ext("crm:ada@example.com"), nil},
		{"external id with :", none, "shop_1:a:b", ext("shop_1:a:b"), nil},
		{"external 32-byte namespace", none, "a" + strings.Repeat("b", 31) + ":1", ext("a" + strings.Repeat("b", 31) + ":1"), nil},
		{"external 33-byte namespace", none, "a" + strings.Repeat("b", 32) + ":1", identifier.ID{}, identifier.ErrNamespace},
		{"external digit namespace", none, "1crm:5", identifier.ID{}, identifier.ErrNamespace},
		{"external empty namespace", none, ":5", identifier.ID{}, identifier.ErrNamespace},
		{"external mailto", none, "mailto:ada@example.com", identifier.ID{}, identifier.ErrNamespaceURI},
		{"external tel", none, "TEL:+442079460958", identifier.ID{}, identifier.ErrNamespaceURI},
		{"external empty id", none, "crm:", identifier.ID{}, identifier.ErrExternalID},
		{"external space in id", none, "crm:12 345", identifier.ID{}, identifier.ErrExternalID},
		{"external non-ASCII id", none, "crm:12é", identifier.ID{}, identifier.ErrExternalID},
		{"external 128-byte id", none, "crm:" + strings.Repeat("9", 128), ext("crm:" + strings.Repeat("9", 128)), nil},
		{"external 129-byte id", none, "crm:" + strings.Repeat("9", 129), identifier.ID{}, identifier.ErrExternalID},
		// Refused whatever the kind.
		{"empty", none, "", identifier.ID{}, identifier.ErrEmpty},
		{"blank", none, " \t ", identifier.ID{}, identifier.ErrEmpty},
		{"plain word", none, "ada", identifier.ID{}, identifier.ErrForm},
		{"postal", gb, "10 Downing Street, London", identifier.ID{}, identifier.ErrForm},
		{"too long", none, strings.Repeat("a", 321), identifier.ID{}, identifier.ErrTooLong},
		{"bad UTF-8", none, "ada\xff@example.com", identifier.ID{}, identifier.ErrUTF8},
		{"NUL", none, "ada\x00@example.com", identifier.ID{}, identifier.ErrControl},
		{"DEL", none, "ada\x7f@example.com", identifier.ID{}, identifier.ErrControl},
		{"C1 control", none, "ada\u0085x@example.com", identifier.ID{}, identifier.ErrControl},
		{"private use", none, "ada\ue000@example.com", identifier.ID{}, identifier.ErrUnassigned},
		{"zero-width space", none, "ada\u200b@example.com", identifier.ID{}, identifier.ErrInvisible},
		{"zero-width non-joiner", none, "ad\u200ca@example.com", identifier.ID{}, identifier.ErrInvisible},
		{"zero-width joiner", none, "ad\u200da@example.com", identifier.ID{}, identifier.ErrInvisible},
		{"word joiner", none, "ada@exam\u2060ple.com", identifier.ID{}, identifier.ErrInvisible},
		{"BOM before", none, "\ufeffada@example.com", identifier.ID{}, identifier.ErrInvisible},
		{"zero-width after", none, "ada@example.com\u200b", identifier.ID{}, identifier.ErrInvisible},
		{"zero-width around spaces", none, " \u200b ada@example.com ", identifier.ID{}, identifier.ErrInvisible},
		{"LRM", none, "\u200eada@example.com", identifier.ID{}, identifier.ErrInvisible},
		{"RLM", none, "ada@example.com\u200f", identifier.ID{}, identifier.ErrInvisible},
		{"RLO", none, "\u202eada@example.com", identifier.ID{}, identifier.ErrInvisible},
		{"LRE", none, "\u202aada@example.com", identifier.ID{}, identifier.ErrInvisible},
		{"PDF", none, "ada@example.com\u202c", identifier.ID{}, identifier.ErrInvisible},
		{"LRI", none, "\u2066ada@example.com", identifier.ID{}, identifier.ErrInvisible},
		{"PDI", none, "ada@example.com\u2069", identifier.ID{}, identifier.ErrInvisible},
		{"soft hyphen", none, "ada@exam\u00adple.com", identifier.ID{}, identifier.ErrInvisible},
		{"variation selector", none, "ada\ufe0f@example.com", identifier.ID{}, identifier.ErrInvisible},
		{"combining grapheme joiner", none, "ada\u034f@example.com", identifier.ID{}, identifier.ErrInvisible},
		{"Hangul filler", none, "\u3164ada@example.com", identifier.ID{}, identifier.ErrInvisible},
		{"zero-width in phone", none, "+44\u200b2079460958", identifier.ID{}, identifier.ErrInvisible},
		{"bidi in phone", gb, "\u202e020 7946 0958", identifier.ID{}, identifier.ErrInvisible},
		{"zero-width in external", none, "crm:123\u200d", identifier.ID{}, identifier.ErrInvisible},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.p.Parse(tt.in)
			if got != tt.want || err != tt.err {
				t.Errorf("Parse(%q) = %+v, %v; want %+v, %v", tt.in, got, err, tt.want, tt.err)
			}
		})
	}
}

// TestErrorsDistinct: each rule has its own message, so a refusal says which
// rule was broken.
func TestErrorsDistinct(t *testing.T) {
	seen := map[string]bool{}
	for _, err := range []error{identifier.ErrEmpty, identifier.ErrTooLong, identifier.ErrUTF8, identifier.ErrControl,
		identifier.ErrInvisible, identifier.ErrUnassigned, identifier.ErrForm, identifier.ErrDisplayName, identifier.ErrQuoted,
		identifier.ErrSpace, identifier.ErrAt, identifier.ErrLocalEmpty, identifier.ErrLocalChar, identifier.ErrLocalLong,
		identifier.ErrDomain, identifier.ErrDomainDot, identifier.ErrDomainLong, identifier.ErrEmailLong, identifier.ErrPhoneRegion,
		identifier.ErrPhoneInvalid, identifier.ErrPhoneCountry, identifier.ErrPhoneExtension, identifier.ErrNamespace,
		identifier.ErrNamespaceURI, identifier.ErrExternalID} {
		if seen[err.Error()] {
			t.Errorf("two rules share the message %q", err)
		}
		seen[err.Error()] = true
	}
	if got, want := identifier.ErrForm.Error(), "not an email address or phone number"; got != want {
		t.Errorf("ErrForm = %q, want %q", got, want)
	}
	if !strings.Contains(identifier.ErrPhoneRegion.Error(), "--default-region") {
		t.Errorf("ErrPhoneRegion = %q, want it to name --default-region", identifier.ErrPhoneRegion)
	}
}

func TestCheckRegion(t *testing.T) {
	for _, tt := range []struct {
		region string
		ok     bool
	}{{"GB", true}, {"US", true}, {"DE", true}, {"gb", false}, {"UK", false}, {"ZZ", false}, {"", false}, {"GBR", false}} {
		if got := identifier.CheckRegion(tt.region) == nil; got != tt.ok {
			t.Errorf("CheckRegion(%q) ok = %v, want %v", tt.region, got, tt.ok)
		}
	}
}

// TestKnown: numbers the memo has seen answer as the library does, and what
// the library refused is refused again.
func TestKnown(t *testing.T) {
	plain := identifier.Parser{}
	memo := identifier.Parser{Known: identifier.NewKnown(4)}
	numbers := []string{"+442079460958", "+44 20 7946 0958", "+442079460000", "+4420794600", "+14155552671", "+390236618300",
		"+999123456789", "+4402079460958", "+447911123456", "+33612345678", "+4915123456789", "+12", "+0442079460958"}
	for round := range 3 {
		for _, n := range numbers {
			want, wantErr := plain.Parse(n)
			got, err := memo.Parse(n)
			if got != want || err != wantErr {
				t.Errorf("round %d: Parse(%q) with a memo = %+v, %v; want %+v, %v", round, n, got, err, want, wantErr)
			}
		}
	}
}

func TestParseAllocatesNothingForCanonicalASCII(t *testing.T) {
	p := identifier.Parser{Known: identifier.NewKnown(8)}
	p.Parse("+442079460958") // once through the library, then known
	for _, s := range []string{"ada@example.com", "a.d.a+news@mail.example.co.uk", "+442079460958"} {
		if n := testing.AllocsPerRun(100, func() { p.Parse(s) }); n != 0 {
			t.Errorf("Parse(%q) allocates %v times, want 0", s, n)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"Ada@Example.COM", " zoe\u0308@x.example ", "ada@bücher.example", "ada@xn--bcher-kva.example",
		"+44 20 7946 0958", "020 7946 0958", "crm:12345", "CRM:a@b", "ada\u200b@example.com", "Ada <ada@example.com>",
		"İSTANBUL@example.com", "\u212b@example.com", "\u03aa\u0301@x.gr", "jo@ab--cd.com", "ß@faß.de", "mailto:x"} {
		f.Add(s, "")
		f.Add(s, "GB")
	}
	known := identifier.NewKnown(4) // small: collisions are part of what is fuzzed
	f.Fuzz(func(t *testing.T, s, region string) {
		if identifier.CheckRegion(region) != nil {
			region = ""
		}
		p := identifier.Parser{DefaultRegion: region}
		id, err := p.Parse(s)
		// The memo of known numbers answers exactly as the library.
		for range 2 {
			if mid, merr := (identifier.Parser{DefaultRegion: region, Known: known}).Parse(s); mid != id || merr != err {
				t.Fatalf("Parse(%q) = %+v, %v; with a memo %+v, %v", s, id, err, mid, merr)
			}
		}
		if err != nil {
			if id != (identifier.ID{}) {
				t.Fatalf("Parse(%q) refused (%v) but returned %+v", s, err, id)
			}
			return
		}
		c := id.Canonical
		// Canonical is a fixed point, under any region: a key stays the
		// key however often a contact passes through, and wherever.
		for _, q := range []identifier.Parser{p, {}, {DefaultRegion: "US"}} {
			if again, err := q.Parse(c); again != id || err != nil {
				t.Fatalf("Parse(%q) = %+v, but Parse(%q) = %+v, %v", s, id, c, again, err)
			}
		}
		if !utf8.ValidString(c) || c != strings.TrimSpace(c) || c == "" {
			t.Fatalf("Parse(%q) canonical %q is not trimmed UTF-8", s, c)
		}
		for _, r := range c {
			if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || unicode.IsSpace(r) {
				t.Fatalf("Parse(%q) canonical %q holds %U", s, c, r)
			}
		}
		// The kinds are disjoint by syntax.
		at, colon := strings.Count(c, "@"), strings.IndexByte(c, ':')
		switch id.Kind {
		case consent.IDEmail:
			local, domain, _ := strings.Cut(c, "@")
			if at != 1 || colon >= 0 || len(local) > 64 || len(domain) > 255 || len(c) > 254 || c != strings.ToLower(c) {
				t.Fatalf("Parse(%q) email %q breaks its form or limits", s, c)
			}
			for i := 0; i < len(domain); i++ {
				if domain[i] >= utf8.RuneSelf {
					t.Fatalf("Parse(%q) email %q has a non-ASCII domain", s, c)
				}
			}
		case consent.IDPhone:
			if c[0] != '+' || len(c) > 16 || strings.Trim(c[1:], "0123456789") != "" {
				t.Fatalf("Parse(%q) phone %q is not E.164", s, c)
			}
		case consent.IDExternal:
			if colon < 1 || c[0] == '+' || len(c) > 32+1+128 {
				t.Fatalf("Parse(%q) external %q breaks its form", s, c)
			}
		default:
			t.Fatalf("Parse(%q) kind %v", s, id.Kind)
		}
	})
}
