package consent_test

import (
	"encoding/base64"
	"testing"

	"github.com/consentd/consentd/consent"
)

func TestTokenRoundTrip(t *testing.T) {
	for _, tok := range []consent.ConsistencyToken{
		{Seq: 1}, {Partition: 0, Seq: 1 << 40, Tag: 1}, {Partition: 1<<32 - 1, Seq: 1<<64 - 1, Tag: 1<<64 - 1}, {Partition: 7, Seq: 42, Tag: 0x0123456789abcdef},
	} {
		got, err := consent.ParseConsistencyToken(tok.String())
		if err != nil || got != tok {
			t.Errorf("ParseConsistencyToken(%q) = %+v, %v; want %+v", tok.String(), got, err, tok)
		}
	}
	if got := (consent.ConsistencyToken{}).String(); got != "" {
		t.Errorf("zero token = %q, want empty", got)
	}
}

// b64 spells raw bytes as token text, for texts String never makes.
func b64(b ...byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func TestParseTokenRefusesGarbage(t *testing.T) {
	tag := []byte{1, 2, 3, 4, 5, 6, 7, 8}
	good := append([]byte{2, 0, 1}, tag...) // partition 0, seq 1
	tests := []struct{ name, s string }{
		{"empty", ""},
		{"one character", "x"},
		{"not base64", "!!!!"},
		{"padded base64", b64(good...) + "="},
		{"too long", "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB"},
		// Version 1 (before tags), as consentd issued them and as a README
		// once showed them.
		{"version 1", "AQAB"},
		{"version 1, partition 2", "AQIC"},
		{"version 1 with a tag's length", b64(append([]byte{1, 0, 1}, tag...)...)},
		{"unknown version", b64(append([]byte{3, 0, 1}, tag...)...)},
		{"no tag", b64(2, 0, 1)},
		{"short tag", b64(2, 0, 1, 1, 2, 3, 4, 5, 6, 7)},
		{"trailing byte", b64(append(good, 0)...)},
		{"sequence 0", b64(append([]byte{2, 0, 0}, tag...)...)},
		{"padded varint", b64(append([]byte{2, 0x80, 0, 1}, tag...)...)},
		{"partition over 32 bits", b64(append([]byte{2, 0x80, 0x80, 0x80, 0x80, 0x10, 1}, tag...)...)},
		{"stray bits", b64(good...)[:14] + "h"}, // decodes to good's bytes: "AgABAQIDBAUGBwg"
	}
	if _, err := consent.ParseConsistencyToken(b64(good...)); err != nil {
		t.Fatalf("the well-formed text the cases alter is refused: %v", err)
	}
	for _, tt := range tests {
		if tok, err := consent.ParseConsistencyToken(tt.s); err == nil {
			t.Errorf("%s: ParseConsistencyToken(%q) = %+v, want an error", tt.name, tt.s, tok)
		}
	}
}

func FuzzParseToken(f *testing.F) {
	f.Add("AQAB")
	f.Add(consent.ConsistencyToken{Partition: 3, Seq: 99, Tag: 0xfeedface}.String())
	f.Add(consent.ConsistencyToken{Partition: 1<<32 - 1, Seq: 1<<64 - 1, Tag: 1<<64 - 1}.String())
	f.Add("garbage")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := consent.ParseConsistencyToken(s)
		if err != nil {
			return
		}
		// Only canonical encodings parse: parsing is the inverse of String.
		if tok.String() != s {
			t.Fatalf("ParseConsistencyToken(%q) = %+v, which encodes as %q", s, tok, tok.String())
		}
	})
}

// Every Check answer carries a token: its text costs one allocation, the
// string itself.
func TestTokenStringAllocatesOnce(t *testing.T) {
	tok := consent.ConsistencyToken{Partition: 15, Seq: 1 << 40, Tag: 1<<64 - 1}
	if n := testing.AllocsPerRun(100, func() { _ = tok.String() }); n != 1 {
		t.Errorf("Token.String allocates %v times, want 1", n)
	}
}
