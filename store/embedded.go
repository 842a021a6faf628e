package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	consent "github.com/consentd/consentd"
	"github.com/consentd/consentd/chain"
)

var (
	bucketRecords  = []byte("records")  // key → record
	bucketEvents   = []byte("events")   // key | seq → event
	bucketRequests = []byte("requests") // key | request id → fingerprint | token
	bucketMeta     = []byte("meta")
	metaSeq        = []byte("seq")
	metaHead       = []byte("head") // the chain link of event seq
)

// EmbeddedFile is the name of the database file inside the data directory.
const EmbeddedFile = "consent.db"

// Embedded is the single-file store: bbolt, one partition, every write
// fsynced before it is acknowledged.
type Embedded struct {
	db       *bolt.DB
	chain    *chain.Key
	onChange func(consent.Key, consent.Token)

	// Observers hear of writes in sequence order, so once a token has been
	// reported every write before it has been too: commits are ordered, but
	// the goroutines that report them are not.
	mu       sync.Mutex
	next     *sync.Cond
	notified uint64
}

// OpenEmbedded opens (creating if needed) the store in dir, whose history
// is chained with links sealed by ch. Only one process may hold it: a second
// one fails after a short wait instead of corrupting it.
func OpenEmbedded(dir string, ch *chain.Key) (*Embedded, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	path := filepath.Join(dir, EmbeddedFile)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("store: %s is in use by another process", path)
	}
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	s := &Embedded{db: db, chain: ch, onChange: func(consent.Key, consent.Token) {}}
	s.next = sync.NewCond(&s.mu)
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketRecords, bucketEvents, bucketRequests, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		if v := tx.Bucket(bucketMeta).Get(metaSeq); len(v) == 8 {
			s.notified = binary.BigEndian.Uint64(v)
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: init %s: %w", path, err)
	}
	return s, nil
}

// OnChange sets the function told of every applied write, after it is durable
// and before Apply returns, so a cache invalidated by it never serves the old
// record to a caller that has seen the write acknowledged. Set it before use.
func (s *Embedded) OnChange(fn func(consent.Key, consent.Token)) { s.onChange = fn }

// Close closes the file; pending writes have all been committed already.
func (s *Embedded) Close() error { return s.db.Close() }

// Ping reports whether the store can serve.
func (s *Embedded) Ping(ctx context.Context) error {
	return s.db.View(func(*bolt.Tx) error { return ctx.Err() })
}

// Get returns the contact's record; an unknown contact has the zero record.
func (s *Embedded) Get(ctx context.Context, key consent.Key) (consent.Record, error) {
	if err := ctx.Err(); err != nil {
		return consent.Record{}, err
	}
	var rec consent.Record
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		rec, err = DecodeRecord(tx.Bucket(bucketRecords).Get(key[:]))
		return err
	})
	return rec, err
}

// GetMany reads many records in one read transaction.
func (s *Embedded) GetMany(ctx context.Context, keys []consent.Key, out []consent.Record) error {
	if len(out) != len(keys) {
		return errors.New("store: GetMany needs as many outputs as keys")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRecords)
		for i, key := range keys {
			var err error
			if out[i], err = DecodeRecord(b.Get(key[:])); err != nil {
				return err
			}
		}
		return nil
	})
}

// Apply folds w into the contact's record, appends it to the history and
// returns its token, all in one fsynced transaction. A request id seen before
// returns the first token and changes nothing.
func (s *Embedded) Apply(ctx context.Context, w consent.Write) (consent.Token, error) {
	toks, errs, err := s.ApplyBatch(ctx, []consent.Write{w})
	if err != nil {
		return consent.Token{}, err
	}
	return toks[0], errs[0]
}

// ApplyBatch applies writes in order in one fsynced transaction: what a bulk
// load needs, where one fsync per write would be the whole cost. Each write
// has its own outcome (a refused write changes nothing and the others go
// on); err is for the batch as a whole, which then changed nothing.
func (s *Embedded) ApplyBatch(ctx context.Context, ws []consent.Write) (toks []consent.Token, errs []error, err error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	var pl *batchPlan
	err = s.db.Update(func(tx *bolt.Tx) error {
		// Update may run this again after a failed attempt: start afresh.
		meta := tx.Bucket(bucketMeta)
		var (
			head uint64
			link chain.Link
		)
		if v := meta.Get(metaSeq); len(v) == 8 {
			head = binary.BigEndian.Uint64(v)
		}
		copy(link[:], meta.Get(metaHead))
		var err error
		if pl, err = planBatch(s.chain, 0, head, link, ws, boltReader{tx}); err != nil {
			return err
		}
		return s.store(tx, pl)
	})
	if err != nil {
		return nil, nil, err
	}
	for i := range ws {
		if pl.applied[i] {
			s.notify(ws[i].Key, pl.toks[i])
		}
	}
	return pl.toks, pl.errs, nil
}

// boltReader reads what planning needs inside a transaction.
type boltReader struct{ tx *bolt.Tx }

func (r boltReader) record(key consent.Key) (consent.Record, uint64, error) {
	rec, err := DecodeRecord(r.tx.Bucket(bucketRecords).Get(key[:]))
	return rec, rec.Token.Seq, err
}

func (r boltReader) replay(w *consent.Write) (consent.Token, bool, error) {
	v := r.tx.Bucket(bucketRequests).Get(boltRequestKey(w.Key, w.Event.RequestID))
	if v == nil {
		return consent.Token{}, false, nil
	}
	tok, err := checkReplay(v, w.Fingerprint)
	return tok, true, err
}

func (r boltReader) history(key consent.Key) ([]storedEvent, error) {
	var out []storedEvent
	c := r.tx.Bucket(bucketEvents).Cursor()
	for k, v := c.Seek(key[:]); k != nil && bytes.HasPrefix(k, key[:]); k, v = c.Next() {
		if len(k) == len(key)+8 {
			out = append(out, storedEvent{seq: binary.BigEndian.Uint64(k[len(key):]), entry: v})
		}
	}
	return out, nil
}

// store writes a plan inside its transaction. Each bucket's puts go in key
// order: contact keys are keyed hashes, random, and bbolt inserts in order
// far faster than at random.
func (s *Embedded) store(tx *bolt.Tx, pl *batchPlan) error {
	records, events, requests, meta := tx.Bucket(bucketRecords), tx.Bucket(bucketEvents), tx.Bucket(bucketRequests), tx.Bucket(bucketMeta)
	type kv struct{ k, v []byte }
	var eventPuts []kv
	erased := map[int]bool{}
	for n, o := range pl.ops {
		key := pl.contacts[o.contact].key
		if o.erase {
			// The stored history goes (its tombstones are in the entry);
			// so do the entries of this batch before the erasure.
			if !erased[o.contact] {
				erased[o.contact] = true
				if err := deletePrefix(events, key[:]); err != nil {
					return err
				}
			}
			kept := eventPuts[:0]
			for _, p := range eventPuts {
				if !bytes.HasPrefix(p.k, key[:]) {
					kept = append(kept, p)
				}
			}
			eventPuts = kept
		}
		eventPuts = append(eventPuts, kv{eventKey(key, pl.head+uint64(n)+1), o.entry})
	}
	recordPuts := make([]kv, 0, len(pl.contacts))
	for _, pc := range pl.contacts {
		if pc.changed {
			recordPuts = append(recordPuts, kv{pc.key[:], EncodeRecord(nil, &pc.rec)})
		}
	}
	var requestPuts []kv
	for _, r := range pl.requests {
		if !r.replay {
			requestPuts = append(requestPuts, kv{boltRequestKey(pl.contacts[r.contact].key, r.id), requestValue(r.fp, r.tok)})
		}
	}
	for _, puts := range []struct {
		b  *bolt.Bucket
		kv []kv
	}{{events, eventPuts}, {records, recordPuts}, {requests, requestPuts}} {
		slices.SortFunc(puts.kv, func(a, b kv) int { return bytes.Compare(a.k, b.k) })
		for _, p := range puts.kv {
			if err := puts.b.Put(p.k, p.v); err != nil {
				return err
			}
		}
	}
	if len(pl.ops) == 0 {
		return nil
	}
	if err := meta.Put(metaSeq, binary.BigEndian.AppendUint64(nil, pl.head+uint64(len(pl.ops)))); err != nil {
		return err
	}
	return meta.Put(metaHead, pl.link[:])
}

func boltRequestKey(key consent.Key, id string) []byte {
	return append(key[:len(key):len(key)], id...)
}

// notify reports a committed write once every earlier one has been reported.
func (s *Embedded) notify(key consent.Key, tok consent.Token) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.notified+1 != tok.Seq {
		s.next.Wait()
	}
	s.onChange(key, tok)
	s.notified = tok.Seq
	s.next.Broadcast()
}

// Events returns up to limit events of the contact after the one whose token
// is after (all when after is zero), oldest first, and whether more follow.
func (s *Embedded) Events(ctx context.Context, key consent.Key, after consent.Token, limit int) ([]consent.Event, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	var (
		out  []consent.Event
		more bool
	)
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketEvents).Cursor()
		start := binary.BigEndian.AppendUint64(key[:len(key):len(key)], after.Seq+1)
		for k, v := c.Seek(start); k != nil && bytes.HasPrefix(k, key[:]); k, v = c.Next() {
			if len(out) == limit {
				more = true
				return nil
			}
			e, err := decodeStoredEvent(v)
			if err != nil {
				return err
			}
			e.Token = consent.Token{Seq: binary.BigEndian.Uint64(k[len(key):])}
			out = append(out, e)
		}
		return nil
	})
	return out, more, err
}

func eventKey(key consent.Key, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(key[:len(key):len(key)], seq)
}

// deletePrefix deletes every key of b that starts with prefix.
func deletePrefix(b *bolt.Bucket, prefix []byte) error {
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Seek(prefix) {
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

func requestValue(fp [32]byte, tok consent.Token) []byte {
	return appendToken(fp[:len(fp):len(fp)], tok)
}

// checkReplay returns the first token of a request seen before, or a
// FieldError when the same id came with a different request.
func checkReplay(v []byte, fp [32]byte) (consent.Token, error) {
	if len(v) < len(fp) {
		return consent.Token{}, errCorrupt
	}
	if !bytes.Equal(v[:len(fp)], fp[:]) {
		return consent.Token{}, consent.Invalid("request_id", "was already used for a different request")
	}
	d := decoder{b: v[len(fp):]}
	tok := d.token()
	return tok, d.finish()
}

// VerifyHistory walks the chain of the store's one partition and checks
// every record against its history, in one read transaction.
func (s *Embedded) VerifyHistory(ctx context.Context) ([]consent.PartitionHistory, error) {
	var rep consent.PartitionHistory
	err := s.db.View(func(tx *bolt.Tx) error {
		w := s.chain.Walk(0)
		meta, records := tx.Bucket(bucketMeta), tx.Bucket(bucketRecords)
		if v := meta.Get(metaSeq); len(v) == 8 {
			rep.HeadSeq = binary.BigEndian.Uint64(v)
		}
		copy(rep.HeadLink[:], meta.Get(metaHead))
		// Events are keyed contact | seq: a contact's history is one run,
		// oldest first.
		var (
			contact consent.Key
			history []storedEvent
		)
		check := func() error {
			if len(history) == 0 {
				return nil
			}
			rep.Contacts++
			if rep.Contacts%1024 == 0 && ctx.Err() != nil {
				return ctx.Err()
			}
			var rec *consent.Record
			if v := records.Get(contact[:]); v != nil {
				r, err := DecodeRecord(v)
				if err != nil {
					w.Problem(history[len(history)-1].seq, "a contact's record is corrupt")
					history = history[:0]
					return nil
				}
				rec = &r
			}
			checkContact(w, rep.HeadSeq, contact, rec, history)
			history = history[:0]
			return nil
		}
		c := tx.Bucket(bucketEvents).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if len(k) != len(contact)+8 {
				w.Problem(0, "an event is stored under a malformed key")
				continue
			}
			if !bytes.Equal(k[:len(contact)], contact[:]) {
				if err := check(); err != nil {
					return err
				}
				copy(contact[:], k)
			}
			history = append(history, storedEvent{seq: binary.BigEndian.Uint64(k[len(contact):]), entry: v})
		}
		if err := check(); err != nil {
			return err
		}
		// A record without any history was not written by consentd.
		events := tx.Bucket(bucketEvents).Cursor()
		err := records.ForEach(func(k, v []byte) error {
			if ek, _ := events.Seek(k); ek != nil && bytes.HasPrefix(ek, k) {
				return nil
			}
			var key consent.Key
			copy(key[:], k)
			rec, err := DecodeRecord(v)
			if err != nil {
				w.Problem(0, "a contact's record is corrupt")
				return nil
			}
			checkContact(w, rep.HeadSeq, key, &rec, nil)
			return nil
		})
		if err != nil {
			return err
		}
		finish(&rep, w)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return []consent.PartitionHistory{rep}, nil
}
