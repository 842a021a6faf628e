package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"time"

	"github.com/consentd/consentd/consent"
)

// The binary encodings of records and events are shared by every store, so a
// record means the same bytes on disk and in Redis. They are compact because
// a deployment holds tens of millions of them: a record lists its strings
// once (the four grants of one sign-up share evidence, notice and actor),
// and the time a grant was recorded is stored relative to when it was
// captured (usually the same instant). Layouts start with a version byte so
// they can change without a flag day.
//
// Version 3 of each adds what names other identifiers (issue 17): a
// record's links, an event's Other, as key and kind. It is written only
// where there is one to write: everything else keeps the bytes version 2
// gives it, so a record without links grows by nothing, and what today's
// stores hold is what this code would write. A rectified record's version
// 3 flags the link it moved to (movedFlag).
const (
	recordV2 = 2
	recordV3 = 3 // recordV2, then the links
	eventV2  = 2
	eventV3  = 3 // eventV2, then Other
)

var errCorrupt = errors.New("store: corrupt encoding")

// EncodeRecord appends the encoding of r to b.
func EncodeRecord(b []byte, r *consent.Record) []byte {
	var st stringTable
	for name, pr := range r.Purposes {
		st.add(name)
		if g := pr.Grant; g != nil {
			st.add(g.ThirdParty, g.EvidenceRef, g.NoticeVersion, g.Actor)
		}
	}
	var tc timeChain
	if len(r.Links) == 0 {
		b = append(b, recordV2)
	} else {
		b = append(b, recordV3)
	}
	b = appendToken(b, r.Token)
	b = tc.append(b, r.ErasedAt)
	b = tc.append(b, r.WithdrawnAllAt)
	b = binary.AppendUvarint(b, uint64(len(st.list)))
	for _, s := range st.list {
		b = appendString(b, s)
	}
	b = binary.AppendUvarint(b, uint64(len(r.Purposes)))
	for name, pr := range r.Purposes {
		b = binary.AppendUvarint(b, st.index[name])
		b = tc.append(b, pr.WithdrawnAt)
		if pr.Grant == nil {
			b = append(b, 0)
			continue
		}
		b = append(b, 1)
		g := pr.Grant
		b = appendProofHead(b, g)
		for _, s := range [...]string{g.ThirdParty, g.EvidenceRef, g.NoticeVersion, g.Actor} {
			b = binary.AppendUvarint(b, st.index[s])
		}
		b = tc.append(b, g.CapturedAt)
		b = tc.append(b, g.ExpiresAt)
		b = appendRecorded(b, g)
	}
	if len(r.Links) == 0 {
		return b
	}
	b = binary.AppendUvarint(b, uint64(len(r.Links)))
	for _, l := range r.Links {
		if r.MovedTo != (consent.Key{}) && l.Key == r.MovedTo {
			l.Kind |= movedFlag
		}
		b = appendLink(b, l)
	}
	return b
}

// movedFlag marks, on a record link's kind byte, the link the record moved
// to (Record.MovedTo, always one of its links: consent.Apply sets both).
// Kinds are the proto's IdentifierKind, far below it, and consent.Apply
// links no other; bytes written before the flag read as not moved, and a
// record that moved costs no byte more.
const movedFlag = 0x80

// appendLink stores a link as its kind and key: 33 bytes, and nothing that
// could hold an identifier itself.
func appendLink(b []byte, l consent.Link) []byte {
	return append(append(b, byte(l.Kind)), l.Key[:]...)
}

// staticStrings are numbered in every record without being stored: the
// built-in purpose names. Append only: records on disk refer to them by
// position.
var staticStrings = [...]string{"", "email_marketing", "sales_outreach", "market_research", "ad_retargeting"}

var staticIndex = func() map[string]uint64 {
	m := make(map[string]uint64, len(staticStrings))
	for i, s := range staticStrings {
		m[s] = uint64(i)
	}
	return m
}()

// stringTable numbers a record's strings: the static ones first (0 is ""),
// then each distinct other string, which the record stores once.
type stringTable struct {
	list  []string
	index map[string]uint64
}

func (t *stringTable) add(ss ...string) {
	if t.index == nil {
		t.index = make(map[string]uint64, len(staticIndex)+4)
		for s, i := range staticIndex {
			t.index[s] = i
		}
	}
	for _, s := range ss {
		if _, ok := t.index[s]; !ok {
			t.list = append(t.list, s)
			t.index[s] = uint64(len(staticStrings) + len(t.list) - 1)
		}
	}
}

// DecodeRecord decodes a record made by EncodeRecord. Empty input is the
// record of an unknown contact.
func DecodeRecord(b []byte) (consent.Record, error) {
	var r consent.Record
	if len(b) == 0 {
		return r, nil
	}
	d := decoder{b: b}
	version := d.byte()
	if version != recordV2 && version != recordV3 {
		return r, errCorrupt
	}
	var tc timeChain
	r.Token = d.token()
	r.ErasedAt = tc.read(&d)
	r.WithdrawnAllAt = tc.read(&d)
	n := d.count()
	strs := make([]string, len(staticStrings), len(staticStrings)+n)
	copy(strs, staticStrings[:])
	for i := 0; i < n && d.err == nil; i++ {
		strs = append(strs, d.string())
	}
	ref := func() string {
		i := d.uvarint()
		if i >= uint64(len(strs)) {
			d.fail()
			return ""
		}
		return strs[i]
	}
	n = d.count()
	if n > 0 {
		r.Purposes = make(map[string]consent.PurposeRecord, n)
	}
	for i := 0; i < n && d.err == nil; i++ {
		name := ref()
		var pr consent.PurposeRecord
		pr.WithdrawnAt = tc.read(&d)
		if d.byte() == 1 {
			var g consent.Proof
			d.proofHead(&g)
			g.ThirdParty, g.EvidenceRef, g.NoticeVersion, g.Actor = ref(), ref(), ref(), ref()
			g.CapturedAt = tc.read(&d)
			g.ExpiresAt = tc.read(&d)
			d.recorded(&g)
			pr.Grant = &g
		}
		if _, dup := r.Purposes[name]; dup {
			d.fail() // an encoder never repeats a purpose; a repeat could hide a withdrawal
		}
		r.Purposes[name] = pr
	}
	if version == recordV3 {
		r.Links = d.links()
		for i := range r.Links {
			l := &r.Links[i]
			if l.Kind&movedFlag == 0 {
				continue
			}
			if r.MovedTo != (consent.Key{}) {
				d.fail() // an encoder flags one link at most
			}
			l.Kind &^= movedFlag
			r.MovedTo = l.Key
		}
	}
	return r, d.finish()
}

// EncodeEvent appends the encoding of e to b.
func EncodeEvent(b []byte, e *consent.Event) []byte {
	version := byte(eventV2)
	if e.Other != (consent.Link{}) {
		version = eventV3
	}
	b = append(b, version, byte(e.Kind))
	b = binary.AppendUvarint(b, uint64(len(e.Purposes)))
	for _, p := range e.Purposes {
		b = appendString(b, p)
	}
	p := &e.Proof
	b = appendProofHead(b, p)
	for _, s := range [...]string{p.ThirdParty, p.EvidenceRef, p.NoticeVersion, p.Actor} {
		b = appendString(b, s)
	}
	b = appendTime(b, p.CapturedAt)
	b = appendTime(b, p.ExpiresAt)
	b = appendRecorded(b, p)
	b = appendString(b, e.RequestID)
	b = appendToken(b, e.Token)
	if version == eventV3 {
		b = appendLink(b, e.Other)
	}
	return b
}

// DecodeEvent decodes an event made by EncodeEvent.
func DecodeEvent(b []byte) (consent.Event, error) {
	var e consent.Event
	d := decoder{b: b}
	version := d.byte()
	if version != eventV2 && version != eventV3 {
		return e, errCorrupt
	}
	e.Kind = consent.EventKind(d.byte())
	n := d.count()
	for i := 0; i < n && d.err == nil; i++ {
		e.Purposes = append(e.Purposes, d.string())
	}
	p := &e.Proof
	d.proofHead(p)
	p.ThirdParty, p.EvidenceRef, p.NoticeVersion, p.Actor = d.string(), d.string(), d.string(), d.string()
	p.CapturedAt = d.time()
	p.ExpiresAt = d.time()
	d.recorded(p)
	e.RequestID = d.string()
	e.Token = d.token()
	if version == eventV3 {
		if e.Other = d.link(); e.Other == (consent.Link{}) {
			d.fail() // an encoder writes version 2 for no Other
		}
	}
	return e, d.finish()
}

func appendProofHead(b []byte, p *consent.Proof) []byte {
	flags := byte(0)
	if p.Bundled {
		flags = 1
	}
	return append(b, byte(p.Method), byte(p.Source), flags)
}

// appendRecorded stores RecordedAt as its distance from CapturedAt, which is
// zero when the capture time defaulted to "now".
func appendRecorded(b []byte, p *consent.Proof) []byte {
	if p.RecordedAt.IsZero() {
		return append(b, 0)
	}
	b = append(b, 1)
	return binary.AppendVarint(b, p.RecordedAt.UnixNano()-p.CapturedAt.UnixNano())
}

func appendToken(b []byte, t consent.ConsistencyToken) []byte {
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

// timeChain encodes a record's times as differences from the previous one:
// the grants of one sign-up share their times, so all but the first take a
// byte. 0 is the zero time; otherwise the zigzag difference plus one.
type timeChain struct{ prev int64 }

func (c *timeChain) append(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(b, 0)
	}
	n := t.UnixNano()
	d := n - c.prev
	c.prev = n
	return binary.AppendUvarint(b, uint64(d<<1^d>>63)+1)
}

func (c *timeChain) read(d *decoder) time.Time {
	v := d.uvarint()
	if v == 0 {
		return time.Time{}
	}
	z := v - 1
	c.prev += int64(z>>1) ^ -int64(z&1)
	return time.Unix(0, c.prev).UTC()
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

func (d *decoder) token() consent.ConsistencyToken {
	p := d.uvarint()
	s := d.uvarint()
	if p > 1<<32-1 {
		d.fail()
	}
	return consent.ConsistencyToken{Partition: uint32(p), Seq: s}
}

func (d *decoder) proofHead(p *consent.Proof) {
	p.Method = consent.Method(d.byte())
	p.Source = consent.Source(d.byte())
	p.Bundled = d.byte()&1 == 1
}

func (d *decoder) recorded(p *consent.Proof) {
	if d.byte() == 1 {
		delta, n := binary.Varint(d.b)
		if n <= 0 {
			d.fail()
			return
		}
		d.b = d.b[n:]
		p.RecordedAt = time.Unix(0, p.CapturedAt.UnixNano()+delta).UTC()
	}
}

func (d *decoder) link() consent.Link {
	var l consent.Link
	l.Kind = consent.IDKind(d.byte())
	if len(d.b) < len(l.Key) {
		d.fail()
		return consent.Link{}
	}
	d.b = d.b[copy(l.Key[:], d.b):]
	return l
}

// links reads a record's links: at least one (an encoder writes version 2
// for none), in strictly ascending key order, as consent.Record keeps them
// and Record.Linked searches them.
func (d *decoder) links() []consent.Link {
	n := d.count()
	if n == 0 {
		d.fail()
		return nil
	}
	out := make([]consent.Link, 0, n)
	for i := 0; i < n && d.err == nil; i++ {
		l := d.link()
		if i > 0 && bytes.Compare(out[i-1].Key[:], l.Key[:]) >= 0 {
			d.fail()
		}
		out = append(out, l)
	}
	if d.err != nil {
		return nil
	}
	return out
}

func (d *decoder) finish() error {
	if d.err == nil && len(d.b) != 0 {
		return errCorrupt
	}
	return d.err
}
