package store

import (
	"encoding/binary"
	"errors"
	"time"

	consent "github.com/consentd/consentd"
)

// The binary encodings of records and events are shared by every store, so a
// record means the same bytes on disk and in Redis. They are compact because
// a deployment holds tens of millions of them. Layouts start with a version
// byte so they can change without a flag day.
const (
	recordV1 = 1
	eventV1  = 1
)

var errCorrupt = errors.New("store: corrupt encoding")

// EncodeRecord appends the encoding of r to b.
func EncodeRecord(b []byte, r *consent.Record) []byte {
	b = append(b, recordV1)
	b = appendToken(b, r.Token)
	b = appendTime(b, r.ErasedAt)
	b = appendTime(b, r.WithdrawnAllAt)
	b = binary.AppendUvarint(b, uint64(len(r.Purposes)))
	for name, pr := range r.Purposes {
		b = appendString(b, name)
		b = appendTime(b, pr.WithdrawnAt)
		if pr.Grant == nil {
			b = append(b, 0)
			continue
		}
		b = append(b, 1)
		b = appendProof(b, pr.Grant)
	}
	return b
}

// DecodeRecord decodes a record made by EncodeRecord. Empty input is the
// record of an unknown contact.
func DecodeRecord(b []byte) (consent.Record, error) {
	var r consent.Record
	if len(b) == 0 {
		return r, nil
	}
	d := decoder{b: b}
	if d.byte() != recordV1 {
		return r, errCorrupt
	}
	r.Token = d.token()
	r.ErasedAt = d.time()
	r.WithdrawnAllAt = d.time()
	n := d.count()
	if n > 0 {
		r.Purposes = make(map[string]consent.PurposeRecord, n)
	}
	for i := 0; i < n && d.err == nil; i++ {
		name := d.string()
		var pr consent.PurposeRecord
		pr.WithdrawnAt = d.time()
		if d.byte() == 1 {
			p := d.proof()
			pr.Grant = &p
		}
		r.Purposes[name] = pr
	}
	return r, d.finish()
}

// EncodeEvent appends the encoding of e to b.
func EncodeEvent(b []byte, e *consent.Event) []byte {
	b = append(b, eventV1, byte(e.Kind))
	b = binary.AppendUvarint(b, uint64(len(e.Purposes)))
	for _, p := range e.Purposes {
		b = appendString(b, p)
	}
	b = appendProof(b, &e.Proof)
	b = appendString(b, e.RequestID)
	return appendToken(b, e.Token)
}

// DecodeEvent decodes an event made by EncodeEvent.
func DecodeEvent(b []byte) (consent.Event, error) {
	var e consent.Event
	d := decoder{b: b}
	if d.byte() != eventV1 {
		return e, errCorrupt
	}
	e.Kind = consent.EventKind(d.byte())
	n := d.count()
	for i := 0; i < n && d.err == nil; i++ {
		e.Purposes = append(e.Purposes, d.string())
	}
	e.Proof = d.proof()
	e.RequestID = d.string()
	e.Token = d.token()
	return e, d.finish()
}

func appendProof(b []byte, p *consent.Proof) []byte {
	flags := byte(0)
	if p.Bundled {
		flags = 1
	}
	b = append(b, byte(p.Method), byte(p.Source), flags)
	b = appendString(b, p.ThirdParty)
	b = appendString(b, p.EvidenceRef)
	b = appendString(b, p.NoticeVersion)
	b = appendString(b, p.Actor)
	b = appendTime(b, p.CapturedAt)
	b = appendTime(b, p.ExpiresAt)
	return appendTime(b, p.RecordedAt)
}

func appendToken(b []byte, t consent.Token) []byte {
	b = binary.AppendUvarint(b, uint64(t.Partition))
	return binary.AppendUvarint(b, t.Seq)
}

// appendTime keeps nanoseconds in UTC; the zero time encodes as 0, so the
// instant 1970-01-01T00:00:00Z cannot be stored (requests refuse it).
func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return binary.AppendVarint(b, 0)
	}
	return binary.AppendVarint(b, t.UnixNano())
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decoder reads what the append functions wrote; the first error sticks and
// every later read returns a zero value.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail() { d.err = errCorrupt; d.b = nil }

func (d *decoder) byte() byte {
	if len(d.b) == 0 {
		d.fail()
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a length that must fit in what is left of the input, so a
// corrupt length cannot make a huge allocation.
func (d *decoder) count() int {
	v := d.uvarint()
	if v > uint64(len(d.b)) {
		d.fail()
		return 0
	}
	return int(v)
}

func (d *decoder) string() string {
	n := d.count()
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *decoder) time() time.Time {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return time.Time{}
	}
	d.b = d.b[n:]
	if v == 0 {
		return time.Time{}
	}
	return time.Unix(0, v).UTC()
}

func (d *decoder) token() consent.Token {
	p := d.uvarint()
	s := d.uvarint()
	if p > 1<<32-1 {
		d.fail()
	}
	return consent.Token{Partition: uint32(p), Seq: s}
}

func (d *decoder) proof() consent.Proof {
	var p consent.Proof
	p.Method = consent.Method(d.byte())
	p.Source = consent.Source(d.byte())
	p.Bundled = d.byte()&1 == 1
	p.ThirdParty = d.string()
	p.EvidenceRef = d.string()
	p.NoticeVersion = d.string()
	p.Actor = d.string()
	p.CapturedAt = d.time()
	p.ExpiresAt = d.time()
	p.RecordedAt = d.time()
	return p
}

func (d *decoder) finish() error {
	if d.err == nil && len(d.b) != 0 {
		return errCorrupt
	}
	return d.err
}
