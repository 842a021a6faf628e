package chain

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var secret = []byte("0123456789abcdef0123456789abcdef")

func mustKey(t testing.TB) *Key {
	t.Helper()
	k, err := NewKey(secret)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// stored is one history entry as a store keeps it.
type stored struct {
	seq     uint64
	contact [32]byte
	entry   []byte
}

// history writes events like a store does: contacts[i] writes event i+1;
// an erase of a contact removes its earlier entries and leaves tombstones.
type history struct {
	key     *Key
	entries []stored
	head    Link
	seq     uint64
}

func (h *history) write(contact byte, erase bool) {
	var c [32]byte
	c[0] = contact
	h.seq++
	var tombs []Tombstone
	if erase {
		kept := h.entries[:0:0]
		for _, s := range h.entries {
			if s.contact != c {
				kept = append(kept, s)
				continue
			}
			e, err := Decode(s.entry)
			if err != nil {
				panic(err)
			}
			tombs = append(tombs, e.Tombstones...)
			tombs = append(tombs, Tombstone{Seq: s.seq, Prev: e.Prev, Link: h.key.Seal(0, s.seq, c, s.entry)})
		}
		h.entries = kept
	}
	entry := Encode(nil, h.head, tombs, []byte{'e', contact, byte(h.seq)})
	h.entries = append(h.entries, stored{seq: h.seq, contact: c, entry: entry})
	h.head = h.key.Seal(0, h.seq, c, entry)
}

func (h *history) check(t *testing.T) *Break {
	t.Helper()
	w := h.key.Walk(0)
	// Stores hand entries over by contact, not in sequence order.
	for i := len(h.entries) - 1; i >= 0; i-- {
		s := h.entries[i]
		w.Add(s.seq, s.contact, s.entry)
	}
	b, err := w.Check(context.Background(), h.seq, h.head)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (h *history) find(seq uint64) int {
	for i, s := range h.entries {
		if s.seq == seq {
			return i
		}
	}
	panic("no such entry")
}

// sample is 1:a 2:b 3:a 4:c 5:erase b 6:a 7:erase a 8:a.
func sample(t *testing.T) *history {
	h := &history{key: mustKey(t)}
	for _, w := range []struct {
		contact byte
		erase   bool
	}{{'a', false}, {'b', false}, {'a', false}, {'c', false}, {'b', true}, {'a', false}, {'a', true}, {'a', false}} {
		h.write(w.contact, w.erase)
	}
	return h
}

func TestWalk(t *testing.T) {
	tests := []struct {
		name   string
		tamper func(h *history)
		want   *Break // nil: intact
	}{
		{"clean, with erasures", func(*history) {}, nil},
		{"event edited", func(h *history) {
			e := h.entries[h.find(4)].entry
			e[len(e)-1] ^= 1
		}, &Break{Seq: 4, Reason: "altered: its hash does not match the one event 5 holds"}},
		{"newest event edited", func(h *history) {
			e := h.entries[h.find(8)].entry
			e[len(e)-1] ^= 1
		}, &Break{Seq: 8, Reason: "does not match the partition head: altered, or the head was"}},
		{"event deleted", func(h *history) {
			i := h.find(4)
			h.entries = append(h.entries[:i], h.entries[i+1:]...)
		}, &Break{Seq: 4, Reason: "missing: deleted without an erasure marker"}},
		{"newest event deleted", func(h *history) {
			h.entries = h.entries[:len(h.entries)-1]
		}, &Break{Seq: 8, Reason: "missing: deleted without an erasure marker"}},
		{"erased event restored", func(h *history) {
			c := [32]byte{'b'}
			h.entries = append(h.entries, stored{seq: 2, contact: c, entry: Encode(nil, h.key.Seal(0, 1, [32]byte{'a'}, nil), nil, []byte{'e', 'b', 2})})
		}, &Break{Seq: 2, Reason: "an erasure removed this event, but it is present again"}},
		{"event moved to another contact", func(h *history) {
			h.entries[h.find(4)].contact = [32]byte{'d'}
		}, &Break{Seq: 4, Reason: "altered: its hash does not match the one event 5 holds"}},
		{"event copied", func(h *history) {
			s := h.entries[h.find(4)]
			s.contact = [32]byte{'d'}
			h.entries = append(h.entries, s)
		}, &Break{Seq: 4, Reason: "two entries have this sequence number (one was copied)"}},
		{"event corrupt", func(h *history) {
			h.entries[h.find(4)].entry = []byte{9}
		}, &Break{Seq: 4, Reason: "entry is corrupt"}},
		{"head rewound", func(h *history) {
			h.head[0] ^= 1
		}, &Break{Seq: 8, Reason: "does not match the partition head: altered, or the head was"}},
		{"event beyond the head", func(h *history) {
			h.seq--
			h.head = h.key.Seal(0, 7, [32]byte{'a'}, h.entries[h.find(7)].entry)
		}, &Break{Seq: 8, Reason: "beyond the partition head (7)"}},
		{"tombstone forged", func(h *history) {
			// The erasure of b claims a different link for event 2: the
			// erasure entry's own link no longer matches.
			e := h.entries[h.find(5)].entry
			e[1+32+1+1+32] ^= 1
		}, &Break{Seq: 3, Reason: "does not follow the erased event before it: this event or an erasure marker was altered"}},
		{"event edited before an erased one", func(h *history) {
			e := h.entries[h.find(5)].entry
			e[len(e)-1] ^= 1
		}, &Break{Seq: 5, Reason: "altered: its hash does not match the one event 6 holds"}},
		{"erasure marker deleted", func(h *history) {
			i := h.find(7)
			h.entries = append(h.entries[:i], h.entries[i+1:]...)
		}, &Break{Seq: 1, Reason: "missing: deleted without an erasure marker"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := sample(t)
			tt.tamper(h)
			got := h.check(t)
			if tt.want != nil {
				tt.want.Partition = 0
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Check (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWalkCounts(t *testing.T) {
	h := sample(t)
	w := h.key.Walk(0)
	for _, s := range h.entries {
		w.Add(s.seq, s.contact, s.entry)
	}
	live, erased := w.Events()
	// Left: 4:c 5:erase-b 7:erase-a 8:a; erased: 2 (by 5), 1 3 6 (by 7).
	if live != 4 || erased != 4 {
		t.Errorf("Events() = %d live, %d erased; want 4, 4", live, erased)
	}
	for seq := uint64(1); seq <= 8; seq++ {
		if !w.Has(seq) {
			t.Errorf("Has(%d) = false", seq)
		}
	}
	if w.Has(9) {
		t.Error("Has(9) = true")
	}
}

func TestProblemComesFirstWhenEarlier(t *testing.T) {
	h := sample(t)
	w := h.key.Walk(3)
	for _, s := range h.entries {
		w.Add(s.seq, s.contact, s.entry)
	}
	w.Problem(2, "record does not match its history")
	want := &Break{Partition: 3, Seq: 2, Reason: "record does not match its history"}
	got, err := w.Check(context.Background(), h.seq, h.head)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Check (-want +got):\n%s", diff)
	}
}

// TestListed: a walk lists the earliest MaxListed breaks in event order,
// whatever order they were found in, the chain's own finding before one
// from outside at the same event, and counts every one.
func TestListed(t *testing.T) {
	h := sample(t)
	w := h.key.Walk(0)
	for _, s := range h.entries {
		w.Add(s.seq, s.contact, s.entry)
	}
	for _, seq := range []uint64{40, 7, 30, 0, 20, 12, 11, 25, 13, 14, 15, 16, 17} {
		w.Problem(seq, fmt.Sprintf("problem at %d", seq))
	}
	e := h.entries[h.find(4)].entry
	e[len(e)-1] ^= 1 // the chain's own break at 4
	w2 := h.key.Walk(0)
	w2.Problem(4, "outside at 4")
	for _, s := range h.entries {
		w2.Add(s.seq, s.contact, s.entry)
	}
	for _, seq := range []uint64{40, 7, 30, 0, 20, 12, 11, 25, 13, 14, 15, 16, 17} {
		w2.Problem(seq, fmt.Sprintf("problem at %d", seq))
	}
	tests := []struct {
		name   string
		w      *Walk
		want   []string
		breaks int
	}{
		{"problems only", w, []string{"0 problem at 0", "7 problem at 7", "11 problem at 11", "12 problem at 12", "13 problem at 13",
			"14 problem at 14", "15 problem at 15", "16 problem at 16", "17 problem at 17", "20 problem at 20"}, 13},
		{"chain first at the same event", w2, []string{"0 problem at 0", "4 altered: its hash does not match the one event 5 holds", "4 outside at 4",
			"7 problem at 7", "11 problem at 11", "12 problem at 12", "13 problem at 13", "14 problem at 14", "15 problem at 15", "16 problem at 16"}, 15},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tt.w.Check(context.Background(), h.seq, h.head); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, b := range tt.w.Listed() {
				got = append(got, fmt.Sprintf("%d %s", b.Seq, b.Reason))
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Listed (-want +got):\n%s", diff)
			}
			if got := tt.w.Breaks(); got != tt.breaks {
				t.Errorf("Breaks() = %d, want %d", got, tt.breaks)
			}
		})
	}
}

func TestKeyDependsOnSecret(t *testing.T) {
	a := mustKey(t)
	b, err := NewKey([]byte("another secret of 16+ bytes"))
	if err != nil {
		t.Fatal(err)
	}
	if a.Seal(0, 1, [32]byte{}, []byte("x")) == b.Seal(0, 1, [32]byte{}, []byte("x")) {
		t.Error("two secrets seal alike")
	}
	if _, err := NewKey([]byte("short")); err == nil {
		t.Error("NewKey accepted a 5-byte secret")
	}
	// Every input of the link matters.
	base := a.Seal(1, 2, [32]byte{3}, []byte("x"))
	for name, l := range map[string]Link{
		"partition": a.Seal(2, 2, [32]byte{3}, []byte("x")),
		"seq":       a.Seal(1, 3, [32]byte{3}, []byte("x")),
		"contact":   a.Seal(1, 2, [32]byte{4}, []byte("x")),
		"entry":     a.Seal(1, 2, [32]byte{3}, []byte("y")),
	} {
		if l == base {
			t.Errorf("changing the %s does not change the link", name)
		}
	}
}

func TestEncodeDecode(t *testing.T) {
	prev := Link{1, 2, 3}
	tombs := []Tombstone{{Seq: 7, Prev: Link{6}, Link: Link{7}}, {Seq: 1 << 40, Link: Link{9}}}
	b := Encode(nil, prev, tombs, []byte("event"))
	got, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	want := Entry{Prev: prev, Tombstones: tombs, Event: []byte("event")}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Decode (-want +got):\n%s", diff)
	}
	for _, bad := range [][]byte{nil, {entryV1}, append([]byte{2}, b[1:]...), b[:34], b[:40], b[:100]} {
		if _, err := Decode(bad); err == nil {
			t.Errorf("Decode(%x) accepted", bad)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(Encode(nil, Link{1}, []Tombstone{{Seq: 3, Link: Link{3}}}, []byte("e")))
	f.Add(Encode(nil, Link{}, nil, nil))
	f.Add([]byte{entryV1})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := Decode(b)
		if err != nil {
			return
		}
		// What decodes re-encodes to the same bytes: one entry, one form,
		// so one link.
		if again := Encode(nil, e.Prev, e.Tombstones, e.Event); !bytes.Equal(again, b) {
			t.Fatalf("Decode(%x) re-encodes as %x", b, again)
		}
	})
}

// TestCheckDamagedHead: a head far past every entry (history lost, a
// corrupt counter) reports the first missing event and counts the rest,
// keeping one break, and a cancelled context ends the walk.
func TestCheckDamagedHead(t *testing.T) {
	w := mustKey(t).Walk(0)
	b, err := w.Check(context.Background(), 1_000_000, Link{1})
	if err != nil {
		t.Fatal(err)
	}
	want := &Break{Seq: 1, Reason: "missing: deleted without an erasure marker"}
	if diff := cmp.Diff(want, b); diff != "" {
		t.Errorf("Check (-want +got):\n%s", diff)
	}
	if got := w.Breaks(); got != 1_000_001 {
		t.Errorf("Breaks() = %d, want 1000001 (each missing event and the head)", got)
	}
	if got := w.Listed(); len(got) != MaxListed || got[0] != *b || got[MaxListed-1].Seq != MaxListed {
		t.Errorf("Listed() = %v, want the missing events 1 to %d", got, MaxListed)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := mustKey(t).Walk(0).Check(ctx, 1_000_000, Link{}); err == nil {
		t.Error("Check with a cancelled context returned no error")
	}
}
