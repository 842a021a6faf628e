package consent_test

import (
	"testing"

	"github.com/consentd/consentd/consent"
)

func TestTokenRoundTrip(t *testing.T) {
	for _, tok := range []consent.ConsistencyToken{
		{Seq: 1}, {Partition: 0, Seq: 1 << 40}, {Partition: 1<<32 - 1, Seq: 1<<64 - 1}, {Partition: 7, Seq: 42},
	} {
		got, err := consent.ParseConsistencyToken(tok.String())
		if err != nil || got != tok {
			t.Errorf("ParseToken(%q) = %+v, %v; want %+v", tok.String(), got, err, tok)
		}
	}
	if got := (consent.ConsistencyToken{}).String(); got != "" {
		t.Errorf("zero token = %q, want empty", got)
	}
}

func TestParseTokenRefusesGarbage(t *testing.T) {
	for _, s := range []string{"", "x", "AQAB=", "AAAB", "AQA", "AQAAAA", "AQABAA", "!!!!", "AQ-_", "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB"} {
		if tok, err := consent.ParseConsistencyToken(s); err == nil {
			t.Errorf("ParseToken(%q) = %+v, want an error", s, tok)
		}
	}
}

func FuzzParseToken(f *testing.F) {
	f.Add("AQAB")
	f.Add(consent.ConsistencyToken{Partition: 3, Seq: 99}.String())
	f.Add("garbage")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := consent.ParseConsistencyToken(s)
		if err != nil {
			return
		}
		// Only canonical encodings parse: parsing is the inverse of String.
		if tok.String() != s {
			t.Fatalf("ParseToken(%q) = %+v, which encodes as %q", s, tok, tok.String())
		}
	})
}

// Every Check answer carries a token: its text costs one allocation, the
// string itself.
func TestTokenStringAllocatesOnce(t *testing.T) {
	tok := consent.ConsistencyToken{Partition: 15, Seq: 1 << 40}
	if n := testing.AllocsPerRun(100, func() { _ = tok.String() }); n != 1 {
		t.Errorf("Token.String allocates %v times, want 1", n)
	}
}
