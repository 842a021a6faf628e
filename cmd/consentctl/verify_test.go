package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"
	bolt "go.etcd.io/bbolt"

	"github.com/consentd/consentd/consent"
	"github.com/consentd/consentd/internal/contactkey"
	"github.com/consentd/consentd/internal/daemontest"
	"github.com/consentd/consentd/internal/redisproc"
	"github.com/consentd/consentd/internal/redistest"
	"github.com/consentd/consentd/store"
)

// tamperer edits a store behind consentd's back, as someone with access to
// Redis or to the embedded file could. Events are a contact's, oldest first.
type tamperer interface {
	// editEvent flips the last byte of the contact's i-th event.
	editEvent(t *testing.T, contact string, i int)
	// deleteEvent removes the contact's i-th event.
	deleteEvent(t *testing.T, contact string, i int)
	// unwithdraw rewrites the contact's record as if purpose had never been
	// withdrawn: the edit that turns a DENY into an ALLOW.
	unwithdraw(t *testing.T, contact, purpose string)
	// addr is consentd's address, after the edit.
	addr(t *testing.T) string
}

func keyOf(t *testing.T, secret []byte, contact string) consent.Key {
	t.Helper()
	keys, err := contactkey.New(secret)
	if err != nil {
		t.Fatal(err)
	}
	k, err := keys.Key(contact)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func unwithdrawn(t *testing.T, rec consent.Record, purpose string) consent.Record {
	t.Helper()
	pr, ok := rec.Purposes[purpose]
	if !ok || pr.WithdrawnAt.IsZero() {
		t.Fatalf("the record has no withdrawal of %s to undo", purpose)
	}
	pr.WithdrawnAt = pr.WithdrawnAt.AddDate(-50, 0, 0)
	rec.Purposes[purpose] = pr
	return rec
}

// embeddedFile edits the bbolt file while consentd is stopped (it holds the
// file's lock while it runs) and starts it again.
type embeddedFile struct {
	dir    string
	daemon *daemontest.Daemon
}

func (e *embeddedFile) secret(t *testing.T) []byte {
	b, err := os.ReadFile(filepath.Join(e.dir, "secret"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (e *embeddedFile) update(t *testing.T, fn func(tx *bolt.Tx) error) {
	t.Helper()
	if e.daemon != nil {
		if code := e.daemon.Stop(t); code != 0 {
			t.Fatalf("consentd exited %d", code)
		}
		e.daemon = nil
	}
	db, err := bolt.Open(filepath.Join(e.dir, store.EmbeddedFile), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
}

// The embedded layout (store/embedded.go): one bucket, "contacts", where a
// contact's record is KEY 'r' and its events KEY 'e' SEQ.
var contactsBucket = []byte("contacts")

// eventKey returns the bbolt key of the contact's i-th event.
func (e *embeddedFile) eventKey(t *testing.T, tx *bolt.Tx, contact string, i int) []byte {
	t.Helper()
	k := keyOf(t, e.secret(t), contact)
	prefix := append(k[:], 'e')
	c := tx.Bucket(contactsBucket).Cursor()
	n := 0
	for ek, _ := c.Seek(prefix); ek != nil && bytes.HasPrefix(ek, prefix); ek, _ = c.Next() {
		if n == i {
			return bytes.Clone(ek)
		}
		n++
	}
	t.Fatalf("%s has no event %d", contact, i)
	return nil
}

func (e *embeddedFile) editEvent(t *testing.T, contact string, i int) {
	e.update(t, func(tx *bolt.Tx) error {
		b := tx.Bucket(contactsBucket)
		k := e.eventKey(t, tx, contact, i)
		v := bytes.Clone(b.Get(k))
		v[len(v)-1] ^= 1
		return b.Put(k, v)
	})
}

func (e *embeddedFile) deleteEvent(t *testing.T, contact string, i int) {
	e.update(t, func(tx *bolt.Tx) error {
		return tx.Bucket(contactsBucket).Delete(e.eventKey(t, tx, contact, i))
	})
}

func (e *embeddedFile) unwithdraw(t *testing.T, contact, purpose string) {
	e.update(t, func(tx *bolt.Tx) error {
		b := tx.Bucket(contactsBucket)
		k := keyOf(t, e.secret(t), contact)
		key := append(k[:], 'r')
		rec, err := store.DecodeRecord(b.Get(key))
		if err != nil {
			return err
		}
		rec = unwithdrawn(t, rec, purpose)
		return b.Put(key, store.EncodeRecord(nil, &rec))
	})
}

func (e *embeddedFile) addr(t *testing.T) string {
	if e.daemon == nil {
		e.daemon = daemontest.Start(t, "--data-dir", e.dir)
	}
	return e.daemon.Addr
}

// redisData edits Redis while consentd runs.
type redisData struct {
	rdb    *redis.Client
	secret []byte
	daemon string
}

// With one partition, every key has the tag {0}.
func (r *redisData) history(t *testing.T, contact string) string {
	k := keyOf(t, r.secret, contact)
	return "{0}:h:" + string(k[:])
}

func (r *redisData) editEvent(t *testing.T, contact string, i int) {
	ctx := context.Background()
	v, err := r.rdb.LIndex(ctx, r.history(t, contact), int64(i)).Bytes()
	if err != nil {
		t.Fatal(err)
	}
	v[len(v)-1] ^= 1
	if err := r.rdb.LSet(ctx, r.history(t, contact), int64(i), v).Err(); err != nil {
		t.Fatal(err)
	}
}

func (r *redisData) deleteEvent(t *testing.T, contact string, i int) {
	ctx := context.Background()
	v, err := r.rdb.LIndex(ctx, r.history(t, contact), int64(i)).Result()
	if err != nil {
		t.Fatal(err)
	}
	if n, err := r.rdb.LRem(ctx, r.history(t, contact), 1, v).Result(); err != nil || n != 1 {
		t.Fatalf("LREM = %d, %v", n, err)
	}
}

func (r *redisData) unwithdraw(t *testing.T, contact, purpose string) {
	ctx := context.Background()
	k := keyOf(t, r.secret, contact)
	key := "{0}:r:" + string(k[:])
	v, err := r.rdb.Get(ctx, key).Bytes()
	if err != nil {
		t.Fatal(err)
	}
	seq, enc, ok := bytes.Cut(v, []byte(":"))
	if !ok {
		t.Fatalf("record %q has no sequence", v)
	}
	rec, err := store.DecodeRecord(enc)
	if err != nil {
		t.Fatal(err)
	}
	rec = unwithdrawn(t, rec, purpose)
	rec.Token = consent.ConsistencyToken{}
	if err := r.rdb.Set(ctx, key, append(append(seq, ':'), store.EncodeRecord(nil, &rec)...), 0).Err(); err != nil {
		t.Fatal(err)
	}
}

func (r *redisData) addr(*testing.T) string { return r.daemon }

var tamperers = []struct {
	name  string
	start func(t *testing.T) tamperer
}{
	{"embedded", func(t *testing.T) tamperer {
		e := &embeddedFile{dir: t.TempDir()}
		e.addr(t)
		return e
	}},
	{"redis", func(t *testing.T) tamperer {
		srv := redistest.Start(t, redisproc.Options{})
		return &redisData{rdb: srv.Client(t), secret: []byte(testSecret), daemon: startConsentdOnRedis(t, srv)}
	}},
}

// TestVerify writes a history through consentd (an erasure included), has
// `consentctl verify` find it intact, then edits or deletes an event, or
// rewrites a record, directly in Redis or in the embedded file, and has
// verify name the first broken link and exit 1.
func TestVerify(t *testing.T) {
	// Events: 1 ada grant, 2 bo grant, 3 ada withdraw, 4 bo erase, 5 cy grant.
	history := [][]string{
		{"grant", "ada@example.com", "email_marketing", "--method", "checkbox"},
		{"grant", "bo@example.com", "email_marketing", "--method", "checkbox"},
		{"withdraw", "ada@example.com", "email_marketing"},
		{"erase", "bo@example.com"},
		{"grant", "cy@example.com", "sales_outreach", "--method", "verbal"},
	}
	const intact = "history intact: 1 partition; 4 events, 1 event erased (accounted for by erasure markers), 3 records checked against the history\n"
	tests := []struct {
		name   string
		tamper func(t *testing.T, s tamperer)
		want   string // the first line
	}{
		{"event edited", func(t *testing.T, s tamperer) { s.editEvent(t, "ada@example.com", 0) },
			"TAMPERED partition 0, event 1: altered: its hash does not match the one event 2 holds"},
		{"newest event of a contact edited", func(t *testing.T, s tamperer) { s.editEvent(t, "ada@example.com", 1) },
			"TAMPERED partition 0, event 3: altered: its hash does not match the one event 4 holds"},
		{"withdrawal deleted", func(t *testing.T, s tamperer) { s.deleteEvent(t, "ada@example.com", 1) },
			"TAMPERED partition 0, event 3: missing: deleted without an erasure marker"},
		{"erasure marker deleted", func(t *testing.T, s tamperer) { s.deleteEvent(t, "bo@example.com", 0) },
			"TAMPERED partition 0, event 2: missing: deleted without an erasure marker"},
		{"record rewritten to undo a withdrawal", func(t *testing.T, s tamperer) { s.unwithdraw(t, "ada@example.com", "email_marketing") },
			"TAMPERED partition 0, event 3: a contact's record does not match its history"},
	}
	for _, b := range tamperers {
		t.Run(b.name, func(t *testing.T) {
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					s := b.start(t)
					for _, args := range history {
						mustRun(t, s.addr(t), args...)
					}
					if got := mustRun(t, s.addr(t), "verify"); got != intact {
						t.Fatalf("verify before tampering = %q, want %q", got, intact)
					}
					tt.tamper(t, s)
					r := at(t, s.addr(t), "verify")
					first, rest, _ := strings.Cut(r.stdout, "\n")
					if r.code != exitDenied || first != tt.want || !strings.Contains(rest, " in 1 of 1 partition; ") {
						t.Errorf("verify after tampering: exit %d, stdout:\n%s\nwant exit %d, first line:\n%s", r.code, r.stdout, exitDenied, tt.want)
					}
				})
			}
		})
	}
}

// TestVerifyHeads: --heads prints each partition's newest event and its
// link, which moves with every write, and --json the whole report.
func TestVerifyHeads(t *testing.T) {
	addr := daemontest.Start(t, "--data-dir", t.TempDir()).Addr
	mustRun(t, addr, "grant", "ada@example.com", "email_marketing", "--method", "checkbox")
	first := mustRun(t, addr, "verify", "--heads")
	mustRun(t, addr, "withdraw", "ada@example.com")
	second := mustRun(t, addr, "verify", "--heads")
	head := func(out string) (string, string) {
		line, _, _ := strings.Cut(out, "\n")
		f := strings.Fields(line)
		if len(f) != 5 || f[0] != "partition" || f[2] != "head" || len(f[4]) != 64 {
			t.Fatalf("--heads line %q, want: partition P head SEQ LINK(64 hex)", line)
		}
		return f[3], f[4]
	}
	seq1, link1 := head(first)
	seq2, link2 := head(second)
	if seq1 != "1" || seq2 != "2" || link1 == link2 {
		t.Errorf("heads %s %s then %s %s: want 1 then 2 with a new link", seq1, link1, seq2, link2)
	}
	js := mustRun(t, addr, "--json", "verify")
	for _, want := range []string{`"intact": true`, `"headSeq": "2"`, `"events": "2"`} {
		if !strings.Contains(js, want) {
			t.Errorf("--json verify lacks %s:\n%s", want, js)
		}
	}
}

// TestVerifyGoesOn replaces keys in Redis by keys of another type (which
// made verify give up with WRONGTYPE and exit 2, hiding everything else)
// beside an ordinary edit, and has verify report every one of them, in
// event order, and exit 1.
func TestVerifyGoesOn(t *testing.T) {
	// Events: 1 ada grant, 2 bo grant, 3 ada withdraw, 4 bo erase, 5 cy
	// grant, 6 to 12 grants to others.
	history := [][]string{
		{"grant", "ada@example.com", "email_marketing", "--method", "checkbox"},
		{"grant", "bo@example.com", "email_marketing", "--method", "checkbox"},
		{"withdraw", "ada@example.com", "email_marketing"},
		{"erase", "bo@example.com"},
		{"grant", "cy@example.com", "sales_outreach", "--method", "verbal"},
	}
	for i := 6; i <= 12; i++ {
		history = append(history, []string{"grant", fmt.Sprintf("c%d@example.com", i), "sales_outreach", "--method", "verbal"})
	}
	ctx := context.Background()
	replace := func(t *testing.T, r *redisData, key string, kind string) {
		t.Helper()
		if err := r.rdb.Del(ctx, key).Err(); err != nil {
			t.Fatal(err)
		}
		var err error
		switch kind {
		case "list":
			err = r.rdb.RPush(ctx, key, "x").Err()
		case "string":
			err = r.rdb.Set(ctx, key, "x", 0).Err()
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	record := func(t *testing.T, r *redisData, contact string) string {
		k := keyOf(t, r.secret, contact)
		return "{0}:r:" + string(k[:])
	}
	tests := []struct {
		name   string
		tamper func(t *testing.T, r *redisData)
		want   []string // every line but the last
		last   string   // the last line's start
	}{
		{"a record and a history replaced, an event edited", func(t *testing.T, r *redisData) {
			r.editEvent(t, "ada@example.com", 0)
			replace(t, r, record(t, r, "bo@example.com"), "list")
			replace(t, r, r.history(t, "cy@example.com"), "string")
		}, []string{
			"TAMPERED partition 0, event 1: altered: its hash does not match the one event 2 holds",
			"TAMPERED partition 0, event 4: a contact's record is not a string: the key was replaced by one of another type",
			"TAMPERED partition 0, event 5: missing: deleted without an erasure marker",
			"TAMPERED partition 0, event 5: altered: its hash does not match the one event 6 holds",
			"TAMPERED partition 0, event 5: a contact's history is not a list: the key was replaced by one of another type",
			"TAMPERED partition 0, event 5: the change stream names this event, but it is neither present nor removed by an erasure",
		}, "history tampered: 6 breaks in 1 of 1 partition; "},
		{"the partition's chain head and change stream replaced", func(t *testing.T, r *redisData) {
			replace(t, r, "{0}:c", "list")
			replace(t, r, "{0}:f", "string")
		}, []string{
			"TAMPERED partition 0: the partition's chain head is not a string: the key was replaced by one of another type",
			"TAMPERED partition 0: the partition's change stream is not a stream: the key was replaced by one of another type",
			"TAMPERED partition 0, event 12: does not match the partition head: altered, or the head was",
		}, "history tampered: 3 breaks in 1 of 1 partition; "},
		{"the partition's sequence counter replaced", func(t *testing.T, r *redisData) {
			replace(t, r, "{0}:s", "list")
		}, []string{
			"TAMPERED partition 0: does not match the partition head: altered, or the head was",
			"TAMPERED partition 0: the partition's sequence counter is not a string: the key was replaced by one of another type",
			"TAMPERED partition 0, event 1: the change stream names event 12, beyond the partition head: events were removed and the head set back",
		}, "history tampered: 3 breaks in 1 of 1 partition; "},
		{"seven histories replaced: more breaks than are listed", func(t *testing.T, r *redisData) {
			for i := 6; i <= 12; i++ {
				replace(t, r, r.history(t, fmt.Sprintf("c%d@example.com", i)), "string")
			}
		}, []string{
			"TAMPERED partition 0, event 6: missing: deleted without an erasure marker",
			"TAMPERED partition 0, event 6: a contact's history is not a list: the key was replaced by one of another type",
			"TAMPERED partition 0, event 6: the change stream names this event, but it is neither present nor removed by an erasure",
			"TAMPERED partition 0, event 7: missing: deleted without an erasure marker",
			"TAMPERED partition 0, event 7: a contact's history is not a list: the key was replaced by one of another type",
			"TAMPERED partition 0, event 7: the change stream names this event, but it is neither present nor removed by an erasure",
			"TAMPERED partition 0, event 8: missing: deleted without an erasure marker",
			"TAMPERED partition 0, event 8: a contact's history is not a list: the key was replaced by one of another type",
			"TAMPERED partition 0, event 8: the change stream names this event, but it is neither present nor removed by an erasure",
			"TAMPERED partition 0, event 9: missing: deleted without an erasure marker",
			"TAMPERED partition 0: 12 more breaks, not listed (only the earliest 10 of a partition are)",
		}, "history tampered: 22 breaks in 1 of 1 partition; "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := redistest.Start(t, redisproc.Options{})
			r := &redisData{rdb: srv.Client(t), secret: []byte(testSecret), daemon: startConsentdOnRedis(t, srv)}
			for _, args := range history {
				mustRun(t, r.addr(t), args...)
			}
			tt.tamper(t, r)
			res := at(t, r.addr(t), "verify")
			lines := strings.Split(strings.TrimSuffix(res.stdout, "\n"), "\n")
			got, last := lines[:len(lines)-1], lines[len(lines)-1]
			if diff := cmp.Diff(tt.want, got); diff != "" || res.code != exitDenied || !strings.HasPrefix(last, tt.last) {
				t.Errorf("verify: exit %d (want %d), stderr %q, last line %q (want %q...), lines (-want +got):\n%s",
					res.code, exitDenied, res.stderr, last, tt.last, diff)
			}
		})
	}
}
