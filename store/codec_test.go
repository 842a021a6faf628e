package store

import (
	"bytes"
	"encoding/hex"
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
	tests := []struct {
		name string
		got  []byte
		want string
	}{
		{"event", EncodeEvent(nil, &ev), "02" + "01" + "01" + "05656d61696c" + "010101" + "00" + "00" + "00" + "0161" + "02" + "00" + "00" + "0172" + "02ac02"},
		{"record", EncodeRecord(nil, &rec), "02" + "02ac02" + "02" + "00" + "01" + "05656d61696c" + "01" + "05" + "07" + "00"},
	}
	for _, tt := range tests {
		if got := hex.EncodeToString(tt.got); got != tt.want {
			t.Errorf("%s encoding = %s, want %s", tt.name, got, tt.want)
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
