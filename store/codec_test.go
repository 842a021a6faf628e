package store

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/consentd/consentd/consent"
)

var (
	t0 = time.Date(2024, 3, 14, 15, 9, 26, 535897932, time.UTC)
	t1 = t0.Add(time.Hour)
	t2 = t0.Add(48 * time.Hour)
)

// fullProof sets every field of a proof to a non-zero value.
func fullProof() consent.Proof {
	return consent.Proof{
		Method:        consent.MethodDoubleOptIn,
		Source:        consent.SourceThirdParty,
		ThirdParty:    "lists-r-us",
		EvidenceRef:   "form:signup-42",
		NoticeVersion: "2024-03",
		CapturedAt:    t0,
		ExpiresAt:     t2,
		Actor:         "crm-import",
		Bundled:       true,
		RecordedAt:    t1,
	}
}

func unicodeProof() consent.Proof {
	return consent.Proof{
		Method:        consent.MethodVerbal,
		Source:        consent.SourceFirstParty,
		EvidenceRef:   "appel enregistré n° 7 ☎",
		NoticeVersion: "版本-3",
		CapturedAt:    t1,
		Actor:         "Zoë Ålander 👩‍💼",
		RecordedAt:    t1.Add(time.Nanosecond),
	}
}

func ptr[T any](v T) *T { return &v }

var recordTests = []struct {
	name string
	r    consent.Record
}{
	{"empty", consent.Record{}},
	{"token only", consent.Record{Token: consent.ConsistencyToken{Seq: 1}}},
	{"erased", consent.Record{Token: consent.ConsistencyToken{Seq: 9}, ErasedAt: t1}},
	{"withdrawn all", consent.Record{Token: consent.ConsistencyToken{Seq: 3}, WithdrawnAllAt: t0}},
	{"purposes with and without grants", consent.Record{
		Token: consent.ConsistencyToken{Seq: 17},
		Purposes: map[string]consent.PurposeRecord{
			"email":     {Grant: ptr(consent.Proof{Method: consent.MethodCheckbox, Source: consent.SourceFirstParty, CapturedAt: t0})},
			"sms":       {WithdrawnAt: t1},
			"ads":       {Grant: ptr(consent.Proof{Method: consent.MethodButton, Source: consent.SourceFirstParty, CapturedAt: t0}), WithdrawnAt: t1},
			"research":  {},
			"telephone": {Grant: ptr(fullProof())},
		},
	}},
	{"all proof fields, expiry, bundled", consent.Record{
		Token:    consent.ConsistencyToken{Seq: 2},
		Purposes: map[string]consent.PurposeRecord{"email": {Grant: ptr(fullProof())}},
	}},
	{"partition and large seq", consent.Record{
		Token:          consent.ConsistencyToken{Partition: 1<<32 - 1, Seq: 1<<64 - 1},
		WithdrawnAllAt: t2,
		Purposes:       map[string]consent.PurposeRecord{"email": {WithdrawnAt: t0}},
	}},
	{"erased then first-party grant", consent.Record{
		Token:    consent.ConsistencyToken{Partition: 7, Seq: 100},
		ErasedAt: t0,
		Purposes: map[string]consent.PurposeRecord{"email": {Grant: ptr(unicodeProof())}},
	}},
	{"unicode", consent.Record{
		Token: consent.ConsistencyToken{Partition: 3, Seq: 5},
		Purposes: map[string]consent.PurposeRecord{
			"e-mail ✉":   {Grant: ptr(unicodeProof())},
			"市场调研":       {WithdrawnAt: t2},
			"":           {WithdrawnAt: t0},
			"\x00binary": {},
		},
	}},
	{"times before 1970 and far future", consent.Record{
		ErasedAt:       time.Date(1969, 12, 31, 23, 59, 59, 999999999, time.UTC),
		WithdrawnAllAt: time.Date(2262, 1, 1, 0, 0, 0, 0, time.UTC),
	}},
	{"one link", consent.Record{
		Token: consent.ConsistencyToken{Seq: 4},
		Links: []consent.Link{linkA},
	}},
	{"links beside purposes, rectified", consent.Record{
		Token:          consent.ConsistencyToken{Partition: 5, Seq: 1 << 33},
		WithdrawnAllAt: t2,
		Purposes:       map[string]consent.PurposeRecord{"email_marketing": {Grant: ptr(fullProof())}},
		Links:          []consent.Link{linkA, linkB, linkC},
	}},
	{"moved to its middle link", consent.Record{
		WithdrawnAllAt: t2,
		Links:          []consent.Link{linkA, linkB, linkC},
		MovedTo:        linkB.Key,
	}},
	{"moved to its last link of as many as allowed", consent.Record{Links: maxLinks(), MovedTo: maxLinks()[consent.MaxLinks-1].Key}},
	{"as many links as allowed", consent.Record{Token: consent.ConsistencyToken{Seq: 1}, Links: maxLinks()}},
	{"unknown link kind survives", consent.Record{Links: []consent.Link{{Key: consent.Key{7}, Kind: consent.IDKind(100)}}}},
}

// Links sort by key: linkA < linkB < linkC.
var (
	linkA = consent.Link{Key: consent.Key{0x01, 31: 0xaa}, Kind: consent.IDEmail}
	linkB = consent.Link{Key: consent.Key{0x80, 31: 0x01}, Kind: consent.IDPhone}
	linkC = consent.Link{Key: consent.Key{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, Kind: consent.IDExternal}
)

func maxLinks() []consent.Link {
	ls := make([]consent.Link, consent.MaxLinks)
	for i := range ls {
		ls[i] = consent.Link{Key: consent.Key{byte(i), 31: byte(i)}, Kind: consent.IDKind(1 + i%3)}
	}
	return ls
}

var eventTests = []struct {
	name string
	e    consent.Event
}{
	{"zero", consent.Event{}},
	{"grant", consent.Event{
		Kind:      consent.EventGrant,
		Purposes:  []string{"email"},
		Proof:     consent.Proof{Method: consent.MethodCheckbox, Source: consent.SourceFirstParty, CapturedAt: t0, RecordedAt: t1},
		RequestID: "req-1",
		Token:     consent.ConsistencyToken{Seq: 1},
	}},
	{"grant with all proof fields, several purposes", consent.Event{
		Kind:      consent.EventGrant,
		Purposes:  []string{"email", "sms", "ads"},
		Proof:     fullProof(),
		RequestID: "req-2",
		Token:     consent.ConsistencyToken{Partition: 12, Seq: 1 << 40},
	}},
	{"withdraw one", consent.Event{
		Kind:     consent.EventWithdraw,
		Purposes: []string{"email"},
		Proof:    consent.Proof{CapturedAt: t1, Actor: "preference-centre"},
		Token:    consent.ConsistencyToken{Partition: 1, Seq: 2},
	}},
	{"withdraw all", consent.Event{
		Kind:  consent.EventWithdraw,
		Proof: consent.Proof{CapturedAt: t1},
		Token: consent.ConsistencyToken{Seq: 3},
	}},
	{"erase", consent.Event{
		Kind:      consent.EventErase,
		Proof:     consent.Proof{CapturedAt: t2, RecordedAt: t2, Actor: "dpo"},
		RequestID: "erase-7",
		Token:     consent.ConsistencyToken{Partition: 1<<32 - 1, Seq: 1<<64 - 1},
	}},
	{"unicode", consent.Event{
		Kind:      consent.EventGrant,
		Purposes:  []string{"e-mail ✉", "市场调研", ""},
		Proof:     unicodeProof(),
		RequestID: "requête-①",
		Token:     consent.ConsistencyToken{Partition: 2, Seq: 9},
	}},
	{"unknown kind and method survive", consent.Event{
		Kind:  consent.EventKind(200),
		Proof: consent.Proof{Method: consent.Method(250), Source: consent.Source(9)},
	}},
	{"link", consent.Event{
		Kind:      consent.EventLink,
		Proof:     consent.Proof{CapturedAt: t0, RecordedAt: t0, Actor: "crm-sync"},
		RequestID: "link-1",
		Token:     consent.ConsistencyToken{Partition: 3, Seq: 11},
		Other:     linkB,
	}},
	{"unlink one", consent.Event{Kind: consent.EventUnlink, Proof: consent.Proof{CapturedAt: t1}, Other: linkA}},
	{"unlink every link", consent.Event{Kind: consent.EventUnlink, Proof: consent.Proof{CapturedAt: t1}}},
	{"rectify from", consent.Event{Kind: consent.EventRectifyFrom, Proof: consent.Proof{CapturedAt: t1, RecordedAt: t1}, RequestID: "move-1", Other: linkC}},
	{"rectify to", consent.Event{Kind: consent.EventRectifyTo, Proof: consent.Proof{CapturedAt: t1, RecordedAt: t1}, RequestID: "move-1", Other: linkA}},
	{"other with a zero key or an unknown kind survives", consent.Event{Kind: consent.EventUnlink, Other: consent.Link{Kind: consent.IDKind(250)}}},
}

func TestRecordRoundTrip(t *testing.T) {
	for _, tt := range recordTests {
		t.Run(tt.name, func(t *testing.T) {
			b := EncodeRecord(nil, &tt.r)
			got, err := DecodeRecord(b)
			if err != nil {
				t.Fatalf("DecodeRecord(EncodeRecord(r)) error: %v", err)
			}
			// An empty purpose map encodes like a nil one.
			if diff := cmp.Diff(tt.r, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("round trip mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEncodeRecordAppends(t *testing.T) {
	r := consent.Record{
		Token:    consent.ConsistencyToken{Partition: 1, Seq: 2},
		Purposes: map[string]consent.PurposeRecord{"email": {Grant: ptr(fullProof())}, "sms": {WithdrawnAt: t1}},
	}
	prefix := []byte("prefix")
	b := EncodeRecord(append([]byte(nil), prefix...), &r)
	if !bytes.HasPrefix(b, prefix) {
		t.Fatalf("EncodeRecord did not keep the prefix: %q", b[:len(prefix)])
	}
	got, err := DecodeRecord(b[len(prefix):])
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(r, got); diff != "" {
		t.Errorf("round trip mismatch (-want +got):\n%s", diff)
	}
}

func TestDecodeRecordEmptyIsUnknownContact(t *testing.T) {
	for _, b := range [][]byte{nil, {}} {
		got, err := DecodeRecord(b)
		if err != nil {
			t.Fatalf("DecodeRecord(%v) error: %v", b, err)
		}
		if diff := cmp.Diff(consent.Record{}, got); diff != "" {
			t.Errorf("DecodeRecord(%v) (-want +got):\n%s", b, diff)
		}
	}
}

func TestEventRoundTrip(t *testing.T) {
	for _, tt := range eventTests {
		t.Run(tt.name, func(t *testing.T) {
			b := EncodeEvent(nil, &tt.e)
			got, err := DecodeEvent(b)
			if err != nil {
				t.Fatalf("DecodeEvent(EncodeEvent(e)) error: %v", err)
			}
			if diff := cmp.Diff(tt.e, got); diff != "" {
				t.Errorf("round trip mismatch (-want +got):\n%s", diff)
			}
			// Events have no maps, so the encoding is canonical.
			if b2 := EncodeEvent(nil, &got); !bytes.Equal(b, b2) {
				t.Errorf("re-encoding differs:\n first %x\nsecond %x", b, b2)
			}
		})
	}
}

// TestGoldenEncoding pins the layout: every store (embedded and Redis, old and
// new binaries) must read the same bytes the same way.
func TestGoldenEncoding(t *testing.T) {
	ev := consent.Event{
		Kind:      consent.EventGrant,
		Purposes:  []string{"email"},
		Proof:     consent.Proof{Method: consent.MethodCheckbox, Source: consent.SourceFirstParty, Bundled: true, Actor: "a", CapturedAt: time.Unix(0, 1).UTC()},
		RequestID: "r",
		Token:     consent.ConsistencyToken{Partition: 2, Seq: 300},
	}
	rec := consent.Record{
		Token:    consent.ConsistencyToken{Partition: 2, Seq: 300},
		ErasedAt: time.Unix(0, -1).UTC(),
		Purposes: map[string]consent.PurposeRecord{"email": {WithdrawnAt: time.Unix(0, 2).UTC()}},
	}
	link := consent.Link{Key: consent.Key{0: 0xab, 31: 0xcd}, Kind: consent.IDPhone}
	linkEv := ev
	linkEv.Kind, linkEv.Purposes, linkEv.Other = consent.EventLink, nil, link
	linked := rec
	linked.Links = []consent.Link{link}
	moved := linked
	moved.MovedTo = link.Key
	key := "ab" + strings.Repeat("00", 30) + "cd"
	tests := []struct {
		name string
		got  []byte
		want string
	}{
		// Version 2, byte for byte what stores written before links hold.
		{"event", EncodeEvent(nil, &ev), goldenEventV2},
		{"record", EncodeRecord(nil, &rec), goldenRecordV2},
		// Version 3: version 2's fields, then the other identifier's kind
		// and key (an event), the count of links and each one's (a record).
		{"link event", EncodeEvent(nil, &linkEv), "03" + "04" + "00" + "010101" + "00" + "00" + "00" + "0161" + "02" + "00" + "00" + "0172" + "02ac02" + "02" + key},
		{"linked record", EncodeRecord(nil, &linked), "03" + goldenRecordV2[2:] + "01" + "02" + key},
		// A rectified record: the linked record, the kind byte of the link
		// it moved to flagged (0x80).
		{"moved record", EncodeRecord(nil, &moved), "03" + goldenRecordV2[2:] + "01" + "82" + key},
	}
	for _, tt := range tests {
		if got := hex.EncodeToString(tt.got); got != tt.want {
			t.Errorf("%s encoding = %s, want %s", tt.name, got, tt.want)
		}
	}
}

// The golden version 2 encodings of TestGoldenEncoding's event and record.
const (
	goldenEventV2  = "02" + "01" + "01" + "05656d61696c" + "010101" + "00" + "00" + "00" + "0161" + "02" + "00" + "00" + "0172" + "02ac02"
	goldenRecordV2 = "02" + "02ac02" + "02" + "00" + "01" + "05656d61696c" + "01" + "05" + "07" + "00"
)

// TestDecodeVersion2 reads bytes written by the code before links (stores
// on disk hold them): they decode exactly as they did, with no Other and
// no links.
func TestDecodeVersion2(t *testing.T) {
	proof := fullProof()
	tests := []struct {
		name  string
		hex   string
		event *consent.Event
		rec   *consent.Record
	}{
		{"golden event", goldenEventV2, &consent.Event{
			Kind:      consent.EventGrant,
			Purposes:  []string{"email"},
			Proof:     consent.Proof{Method: consent.MethodCheckbox, Source: consent.SourceFirstParty, Bundled: true, Actor: "a", CapturedAt: time.Unix(0, 1).UTC()},
			RequestID: "r",
			Token:     consent.ConsistencyToken{Partition: 2, Seq: 300},
		}, nil},
		{"golden record", goldenRecordV2, nil, &consent.Record{
			Token:    consent.ConsistencyToken{Partition: 2, Seq: 300},
			ErasedAt: time.Unix(0, -1).UTC(),
			Purposes: map[string]consent.PurposeRecord{"email": {WithdrawnAt: time.Unix(0, 2).UTC()}},
		}},
		// Written by the codec of c278ad5 (before links): an erasure and a
		// withdrawal as history entries hold them, a record with a grant.
		{"erase event", "0203000000000000000364706f988db9e8cacfa3bd2f000100036572610000", &consent.Event{
			Kind:      consent.EventErase,
			Proof:     consent.Proof{CapturedAt: t2, RecordedAt: t2, Actor: "dpo"},
			RequestID: "era",
		}, nil},
		{"withdraw event", "02020103736d73000000000000057072656673988d8ecaecd6d6bc2f000003772d310000", &consent.Event{
			Kind:      consent.EventWithdraw,
			Purposes:  []string{"sms"},
			Proof:     consent.Proof{CapturedAt: t1, Actor: "prefs"},
			RequestID: "w-1",
		}, nil},
		{"record with a grant", "02000900000505656d61696c0a6c697374732d722d75730e666f726d3a7369676e75702d343207323032342d30330a63726d2d696d706f72740105000108020106070809998dc9bea685d5bc2f8180f0a9a4ca4e018080c58bc6d101", nil, &consent.Record{
			Token:    consent.ConsistencyToken{Seq: 9},
			Purposes: map[string]consent.PurposeRecord{"email": {Grant: &proof}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := hex.DecodeString(tt.hex)
			if err != nil {
				t.Fatal(err)
			}
			if tt.event != nil {
				got, err := DecodeEvent(b)
				if err != nil {
					t.Fatalf("DecodeEvent: %v", err)
				}
				if diff := cmp.Diff(*tt.event, got); diff != "" {
					t.Errorf("DecodeEvent (-want +got):\n%s", diff)
				}
				if again := EncodeEvent(nil, &got); !bytes.Equal(again, b) {
					t.Errorf("re-encoded as %x, want the same bytes %x", again, b)
				}
			}
			if tt.rec != nil {
				got, err := DecodeRecord(b)
				if err != nil {
					t.Fatalf("DecodeRecord: %v", err)
				}
				if diff := cmp.Diff(*tt.rec, got); diff != "" {
					t.Errorf("DecodeRecord (-want +got):\n%s", diff)
				}
			}
		})
	}
}

// TestRecordWithoutLinksDoesNotGrow: links cost their own bytes only.
func TestRecordWithoutLinksDoesNotGrow(t *testing.T) {
	for _, tt := range recordTests {
		// Several purposes encode in map order, whose time differences
		// vary in length.
		if len(tt.r.Links) > 0 || len(tt.r.Purposes) > 1 {
			continue
		}
		b := EncodeRecord(nil, &tt.r)
		linked := tt.r
		linked.Links = []consent.Link{linkA}
		if got, want := len(EncodeRecord(nil, &linked))-len(b), 1+33; got != want {
			t.Errorf("%s: one link adds %d bytes, want %d (a count, a kind and a key)", tt.name, got, want)
		}
		if b[0] != recordV2 {
			t.Errorf("%s: written as version %d, want %d", tt.name, b[0], recordV2)
		}
	}
}

// corruptions are inputs no encoder produces.
var (
	corruptRecords = []struct {
		name string
		b    []byte
	}{
		{"unknown version", []byte{2, 0, 0, 0, 0, 0}},
		{"version 0", []byte{0}},
		{"version only", []byte{recordV2}},
		{"partition over 32 bits", []byte{recordV2, 0x80, 0x80, 0x80, 0x80, 0x10, 1, 0, 0, 0}},
		{"varint overflow", []byte{recordV2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0}},
		{"purpose count beyond input", []byte{recordV2, 0, 1, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f}},
		{"string length beyond input", []byte{recordV2, 0, 1, 0, 0, 1, 0xff, 0x01, 'a'}},
		{"trailing byte", append(EncodeRecord(nil, &consent.Record{Token: consent.ConsistencyToken{Seq: 1}}), 0)},
		{"unknown version 4", []byte{4, 0, 0, 0, 0, 0, 0, 1, 1}},
		{"version 3 with no links", []byte{recordV3, 0, 0, 0, 0, 0, 0, 0}},
		{"link count beyond input", append([]byte{recordV3, 0, 0, 0, 0, 0, 0, 2, 1}, make([]byte, 32)...)},
		{"link key cut short", append([]byte{recordV3, 0, 0, 0, 0, 0, 0, 1, 1}, make([]byte, 31)...)},
		{"links out of order", EncodeRecord(nil, &consent.Record{Links: []consent.Link{linkB, linkA}})},
		{"a link twice", EncodeRecord(nil, &consent.Record{Links: []consent.Link{linkA, linkA}})},
		{"trailing byte after links", append(EncodeRecord(nil, &consent.Record{Links: []consent.Link{linkA}}), 0)},
		{"moved to two links", append(append([]byte{recordV3, 0, 0, 0, 0, 0, 0, 2, 0x81, 1}, make([]byte, 31)...), append([]byte{0x82, 2}, make([]byte, 31)...)...)},
	}
	corruptEvents = []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"unknown version", []byte{9, 1, 0}},
		{"version only", []byte{eventV2}},
		{"purpose count beyond input", []byte{eventV2, 1, 0xff, 0xff, 0x03}},
		{"string length beyond input", []byte{eventV2, 1, 1, 0x20, 'a', 'b'}},
		{"trailing byte", append(EncodeEvent(nil, &consent.Event{Kind: consent.EventErase}), 0)},
		{"unknown version 4", append([]byte{4}, EncodeEvent(nil, &consent.Event{Kind: consent.EventLink, Other: linkA})[1:]...)},
		{"version 3 with no other", append(append([]byte{eventV3}, EncodeEvent(nil, &consent.Event{Kind: consent.EventUnlink})[1:]...), make([]byte, 33)...)},
		{"version 3 without its other", append([]byte{eventV3}, EncodeEvent(nil, &consent.Event{Kind: consent.EventLink})[1:]...)},
		{"trailing byte after other", append(EncodeEvent(nil, &consent.Event{Kind: consent.EventLink, Other: linkC}), 0)},
	}
)

func TestDecodeRecordCorrupt(t *testing.T) {
	for _, tt := range corruptRecords {
		t.Run(tt.name, func(t *testing.T) {
			if r, err := DecodeRecord(tt.b); err == nil {
				t.Errorf("DecodeRecord(%x) = %+v, want an error", tt.b, r)
			}
		})
	}
}

func TestDecodeEventCorrupt(t *testing.T) {
	for _, tt := range corruptEvents {
		t.Run(tt.name, func(t *testing.T) {
			if e, err := DecodeEvent(tt.b); err == nil {
				t.Errorf("DecodeEvent(%x) = %+v, want an error", tt.b, e)
			}
		})
	}
}

// Every strict, non-empty prefix of a valid encoding is truncated and must be
// refused; so must a flipped version byte.
func TestDecodeTruncated(t *testing.T) {
	for _, tt := range recordTests {
		b := EncodeRecord(nil, &tt.r)
		for i := 1; i < len(b); i++ {
			if _, err := DecodeRecord(b[:i]); err == nil {
				t.Errorf("record %q: DecodeRecord of %d of %d bytes succeeded, want an error", tt.name, i, len(b))
			}
		}
	}
	for _, tt := range eventTests {
		b := EncodeEvent(nil, &tt.e)
		for i := 0; i < len(b); i++ {
			if _, err := DecodeEvent(b[:i]); err == nil {
				t.Errorf("event %q: DecodeEvent of %d of %d bytes succeeded, want an error", tt.name, i, len(b))
			}
		}
	}
}

func FuzzDecodeRecord(f *testing.F) {
	for _, tt := range recordTests {
		f.Add(EncodeRecord(nil, &tt.r))
	}
	for _, tt := range corruptRecords {
		f.Add(tt.b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeRecord(b)
		if err != nil {
			return
		}
		b2 := EncodeRecord(nil, &r)
		r2, err := DecodeRecord(b2)
		if err != nil {
			t.Fatalf("DecodeRecord(EncodeRecord(DecodeRecord(%x))) error: %v\nre-encoded: %x", b, err, b2)
		}
		// Map order varies, so compare values, not bytes.
		if diff := cmp.Diff(r, r2); diff != "" {
			t.Fatalf("re-decoded record differs (-first +second):\n%s", diff)
		}
	})
}

func FuzzDecodeEvent(f *testing.F) {
	for _, tt := range eventTests {
		f.Add(EncodeEvent(nil, &tt.e))
	}
	for _, tt := range corruptEvents {
		f.Add(tt.b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := DecodeEvent(b)
		if err != nil {
			return
		}
		b2 := EncodeEvent(nil, &e)
		e2, err := DecodeEvent(b2)
		if err != nil {
			t.Fatalf("DecodeEvent(EncodeEvent(DecodeEvent(%x))) error: %v\nre-encoded: %x", b, err, b2)
		}
		if diff := cmp.Diff(e, e2); diff != "" {
			t.Fatalf("re-decoded event differs (-first +second):\n%s", diff)
		}
		if b3 := EncodeEvent(nil, &e2); !bytes.Equal(b2, b3) {
			t.Fatalf("encoding is not stable:\n%x\n%x", b2, b3)
		}
	})
}

// TestSameRecordComparesMovedTo: the history check refolds MovedTo, so a
// record that says it moved (or not) against its history is a mismatch.
func TestSameRecordComparesMovedTo(t *testing.T) {
	linked := consent.Record{Links: []consent.Link{linkA, linkB}}
	moved := linked
	moved.MovedTo = linkA.Key
	movedB := linked
	movedB.MovedTo = linkB.Key
	tests := []struct {
		name string
		a, b consent.Record
		want bool
	}{
		{"both moved to the same link", moved, moved, true},
		{"moved and not", moved, linked, false},
		{"moved to different links", moved, movedB, false},
	}
	for _, tt := range tests {
		if got := sameRecord(&tt.a, &tt.b); got != tt.want {
			t.Errorf("%s: sameRecord = %v, want %v", tt.name, got, tt.want)
		}
	}
}
