package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	consent "github.com/consentd/consentd"
)

var (
	bucketRecords  = []byte("records")  // key → record
	bucketEvents   = []byte("events")   // key | seq → event
	bucketRequests = []byte("requests") // key | request id → fingerprint | token
	bucketMeta     = []byte("meta")
	metaSeq        = []byte("seq")
)

// EmbeddedFile is the name of the database file inside the data directory.
const EmbeddedFile = "consent.db"

// Embedded is the single-file store: bbolt, one partition, every write
// fsynced before it is acknowledged.
type Embedded struct {
	db       *bolt.DB
	onChange func(consent.Key, consent.Token)

	// Observers hear of writes in sequence order, so once a token has been
	// reported every write before it has been too: commits are ordered, but
	// the goroutines that report them are not.
	mu       sync.Mutex
	next     *sync.Cond
	notified uint64
}

// OpenEmbedded opens (creating if needed) the store in dir. Only one process
// may hold it: a second one fails after a short wait instead of corrupting it.
func OpenEmbedded(dir string) (*Embedded, error) {
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
	s := &Embedded{db: db, onChange: func(consent.Key, consent.Token) {}}
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
	var applied []bool
	err = s.db.Update(func(tx *bolt.Tx) error {
		// Update may run this again after a failed attempt: start afresh.
		toks, errs, applied = make([]consent.Token, len(ws)), make([]error, len(ws)), make([]bool, len(ws))
		for i := range ws {
			var err error
			toks[i], applied[i], err = applyTx(tx, &ws[i])
			if errors.Is(err, consent.ErrInvalid) || errors.Is(err, consent.ErrSuppressed) {
				errs[i] = err
				continue
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	for i := range ws {
		if applied[i] {
			s.notify(ws[i].Key, toks[i])
		}
	}
	return toks, errs, nil
}

// applyTx applies one write inside tx; applied is false for a replay.
func applyTx(tx *bolt.Tx, w *consent.Write) (tok consent.Token, applied bool, err error) {
	records, events, requests := tx.Bucket(bucketRecords), tx.Bucket(bucketEvents), tx.Bucket(bucketRequests)
	reqKey := append(w.Key[:len(w.Key):len(w.Key)], w.Event.RequestID...)
	if v := requests.Get(reqKey); v != nil && w.Event.RequestID != "" {
		tok, err := checkReplay(v, w.Fingerprint)
		return tok, false, err
	}
	rec, err := DecodeRecord(records.Get(w.Key[:]))
	if err != nil {
		return tok, false, err
	}
	rec, err = consent.Apply(rec, w.Event)
	if err != nil {
		return tok, false, err
	}
	meta := tx.Bucket(bucketMeta)
	seq := uint64(1)
	if v := meta.Get(metaSeq); len(v) == 8 {
		seq = binary.BigEndian.Uint64(v) + 1
	}
	tok = consent.Token{Seq: seq}
	rec.Token = tok
	ev := w.Event
	ev.Token = tok
	if ev.Kind == consent.EventErase {
		if err := deletePrefix(events, w.Key[:]); err != nil {
			return tok, false, err
		}
	}
	for _, put := range []struct {
		b    *bolt.Bucket
		k, v []byte
	}{
		{meta, metaSeq, binary.BigEndian.AppendUint64(nil, seq)},
		{records, w.Key[:], EncodeRecord(nil, &rec)},
		{events, binary.BigEndian.AppendUint64(w.Key[:len(w.Key):len(w.Key)], seq), EncodeEvent(nil, &ev)},
	} {
		if err := put.b.Put(put.k, put.v); err != nil {
			return tok, false, err
		}
	}
	if w.Event.RequestID != "" {
		if err := requests.Put(reqKey, requestValue(w.Fingerprint, tok)); err != nil {
			return tok, false, err
		}
	}
	return tok, true, nil
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
			e, err := DecodeEvent(v)
			if err != nil {
				return err
			}
			out = append(out, e)
		}
		return nil
	})
	return out, more, err
}

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
