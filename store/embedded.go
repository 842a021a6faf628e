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

	"github.com/consentd/consentd/consent"
	"github.com/consentd/consentd/internal/chain"
)

// Embedded layout: everything of a contact sits under its key in one
// bucket, so a write touches one region of the B+tree (usually one page)
// instead of one random page in each of three: with contact keys being
// keyed hashes, scattered all over, that is what a bulk load's speed comes
// down to (3.4x more writes/s at 200,000 contacts than three buckets).
//
//	contacts  key | 'r'              → record (with its token)
//	          key | 'e' | seq (BE64) → chain entry of the event (no token)
//	          key | 'q' | request id → fingerprint | token
//	meta      seq → the newest event's sequence (BE64)
//	          head → its chain link
//	          layout → embeddedLayout
//	          key-scheme → the contact-key scheme (contactkey.Scheme)
//	          id → the store id (random, made when the file is)
//	claims    Write.Claim name → the request its caller's request id is bound to
var (
	bucketContacts = []byte("contacts")
	bucketMeta     = []byte("meta")
	bucketClaims   = []byte("claims")
	metaSeq        = []byte("seq")
	metaHead       = []byte("head")
	metaLayout     = []byte("layout")
	metaID         = []byte("id")
	metaKeyScheme  = []byte("key-scheme")
)

const (
	tagRecord  = 'r'
	tagEvent   = 'e'
	tagRequest = 'q'
	// embeddedLayout names the layout above; a file without it, or with
	// another, was written by another version and is refused, not misread.
	embeddedLayout = "contacts-v2"
	// embeddedLegacyLayout is the layout of files written before issue
	// 17: the same, without a key scheme, and its contacts keyed by the raw
	// string. Only consentctl migrate opens it (EmbeddedConfig.Migrating).
	embeddedLegacyLayout = "contacts-v1"
)

func boltRecordKey(key consent.Key) []byte { return append(key[:len(key):len(key)], tagRecord) }

func boltEventPrefix(key consent.Key) []byte { return append(key[:len(key):len(key)], tagEvent) }

func boltEventKey(key consent.Key, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(boltEventPrefix(key), seq)
}

func boltRequestKey(key consent.Key, id string) []byte {
	return append(append(key[:len(key):len(key)], tagRequest), id...)
}

// initialMmap is the address space the file is mapped with from the start
// (not memory: pages are only read in as used). Each time the file outgrows
// its mapping, bbolt copies every node a write touched out of it and
// remaps, which made growth a third of a bulk load's work; read
// transactions also hold back a remap, and so every write that needs one.
const initialMmap = 1 << 30

// EmbeddedFile is the name of the database file inside the data directory.
const EmbeddedFile = "consent.db"

// Embedded is the single-file store: bbolt, one partition, every write
// fsynced before it is acknowledged.
type Embedded struct {
	db       *bolt.DB
	chain    *chain.Key
	onChange func(consent.Key, consent.ConsistencyToken)
	// disk refuses writes while the disk is full (diskspace.go).
	disk diskGuard
	id   string // see StoreID
	// scheme is the contact-key scheme; legacy says the file has the
	// legacy layout (opened by consentctl migrate).
	scheme string
	legacy bool
	// stampScheme is the scheme a new file got, or StampLayout gives.
	stampScheme string

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
	return OpenEmbeddedConfig(dir, ch, EmbeddedConfig{})
}

// EmbeddedConfig is how to open an embedded store.
type EmbeddedConfig struct {
	// KeyScheme is the contact-key scheme (contactkey.Scheme) a new file
	// records; "" is LegacyKeyScheme. A file that exists keeps its own:
	// Embedded.KeyScheme says which.
	KeyScheme string
	// Migrating opens a file of the legacy layout too, for consentctl
	// migrate, which re-keys its contacts and then stamps the current
	// layout with KeyScheme (StampLayout). It never creates a file.
	Migrating bool
}

// OpenEmbeddedConfig is OpenEmbedded with a configuration. A file of the
// legacy layout is refused with an *UnmigratedError unless c.Migrating.
func OpenEmbeddedConfig(dir string, ch *chain.Key, c EmbeddedConfig) (*Embedded, error) {
	path := filepath.Join(dir, EmbeddedFile)
	if c.Migrating {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("store: %w", err)
		}
	}
	if c.KeyScheme == "" {
		c.KeyScheme = LegacyKeyScheme
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second, InitialMmapSize: initialMmap})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("store: %s is in use by another process", path)
	}
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	s := &Embedded{db: db, chain: ch, onChange: func(consent.Key, consent.ConsistencyToken) {}, disk: diskGuard{dir: dir}}
	s.next = sync.NewCond(&s.mu)
	err = db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			var err error
			if meta, err = tx.CreateBucket(bucketMeta); err != nil {
				return err
			}
			if err := meta.Put(metaLayout, []byte(embeddedLayout)); err != nil {
				return err
			}
			if err := meta.Put(metaKeyScheme, []byte(c.KeyScheme)); err != nil {
				return err
			}
		}
		switch got := string(meta.Get(metaLayout)); {
		case got == embeddedLegacyLayout && c.Migrating:
			s.scheme, s.legacy = LegacyKeyScheme, true
		case got == embeddedLegacyLayout:
			return &UnmigratedError{Store: path, Layout: got}
		case got != embeddedLayout:
			return fmt.Errorf("the file was written by another version of consentd (layout %q, want %q): start this version on a new data directory", got, embeddedLayout)
		default:
			if s.scheme = string(meta.Get(metaKeyScheme)); s.scheme == "" {
				return fmt.Errorf("the file does not name its contact-key scheme (%s in the meta bucket)", metaKeyScheme)
			}
		}
		for _, b := range [][]byte{bucketContacts, bucketClaims} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		if v := meta.Get(metaSeq); len(v) == 8 {
			s.notified = binary.BigEndian.Uint64(v)
		}
		// Files made before stores had ids get one now: the tokens of the
		// version that made them are refused anyway.
		if s.id = string(meta.Get(metaID)); s.id == "" {
			s.id = newStoreID()
			return meta.Put(metaID, []byte(s.id))
		}
		return nil
	})
	var unmigrated *UnmigratedError
	if errors.As(err, &unmigrated) {
		db.Close()
		return nil, err
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: init %s: %w", path, err)
	}
	s.stampScheme = c.KeyScheme
	return s, nil
}

// KeyScheme returns the contact-key scheme the store's contacts are keyed
// with (contactkey.Scheme): the one its layout names, LegacyKeyScheme on a
// legacy file.
func (s *Embedded) KeyScheme() string { return s.scheme }

// Migrated reports whether the file has the current layout.
func (s *Embedded) Migrated() bool { return !s.legacy }

// StampLayout gives a legacy file opened with EmbeddedConfig.Migrating the
// current layout, with the contact-key scheme EmbeddedConfig.KeyScheme, in
// one transaction. On a file of the current layout it does nothing.
func (s *Embedded) StampLayout(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !s.legacy {
		return nil
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if got := string(meta.Get(metaLayout)); got != embeddedLegacyLayout {
			return fmt.Errorf("store: the layout changed to %q while the file was open", got)
		}
		if err := meta.Put(metaKeyScheme, []byte(s.stampScheme)); err != nil {
			return err
		}
		return meta.Put(metaLayout, []byte(embeddedLayout))
	})
	if err != nil {
		return err
	}
	s.scheme, s.legacy = s.stampScheme, false
	return nil
}

// StoreID returns the random id the store got when it was made: a new data
// directory is a new store, though its secret may be the old one's.
func (s *Embedded) StoreID() string { return s.id }

// OnChange sets the function told of every applied write, after it is durable
// and before Apply returns, so a cache invalidated by it never serves the old
// record to a caller that has seen the write acknowledged. Set it before use.
func (s *Embedded) OnChange(fn func(consent.Key, consent.ConsistencyToken)) { s.onChange = fn }

// Close closes the file; pending writes have all been committed already.
func (s *Embedded) Close() error { return s.db.Close() }

// Ping reports whether the store can serve: also not while its disk is
// full, when writes cannot be made durable.
func (s *Embedded) Ping(ctx context.Context) error {
	if err := s.disk.ready(); err != nil {
		return err
	}
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
		rec, err = DecodeRecord(tx.Bucket(bucketContacts).Get(boltRecordKey(key)))
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
		b := tx.Bucket(bucketContacts)
		for i, key := range keys {
			var err error
			if out[i], err = DecodeRecord(b.Get(boltRecordKey(key))); err != nil {
				return err
			}
		}
		return nil
	})
}

// Apply folds w into the contact's record, appends it to the history and
// returns its token, all in one fsynced transaction. A request id seen before
// returns the first token and changes nothing.
func (s *Embedded) Apply(ctx context.Context, w consent.Write) (consent.ConsistencyToken, error) {
	toks, errs, err := s.ApplyBatch(ctx, []consent.Write{w})
	if err != nil {
		return consent.ConsistencyToken{}, err
	}
	return toks[0], errs[0]
}

// ApplyBatch applies writes in order in one fsynced transaction: what a bulk
// load needs, where one fsync per write would be the whole cost. Each write
// has its own outcome (a refused write changes nothing and the others go
// on); err is for the batch as a whole, which then changed nothing: on a
// full disk, one that wraps consent.ErrExhausted.
func (s *Embedded) ApplyBatch(ctx context.Context, ws []consent.Write) (toks []consent.ConsistencyToken, errs []error, err error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	if err := s.disk.ready(); err != nil {
		return nil, nil, err
	}
	var pl *batchPlan
	err = s.db.Update(func(tx *bolt.Tx) error {
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
		return nil, nil, s.disk.failed(err)
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
	rec, err := DecodeRecord(r.tx.Bucket(bucketContacts).Get(boltRecordKey(key)))
	return rec, rec.Token.Seq, err
}

func (r boltReader) replay(w *consent.Write) (consent.ConsistencyToken, bool, error) {
	v := r.tx.Bucket(bucketContacts).Get(boltRequestKey(w.Key, w.RequestName()))
	if v == nil {
		return consent.ConsistencyToken{}, false, nil
	}
	tok, err := checkReplay(v, w.Fingerprint)
	return tok, true, err
}

// claim reads the binding in the same transaction as the write: one
// process, one transaction, so no interleaving to think about.
func (r boltReader) claim(name [32]byte) ([32]byte, bool, error) {
	var req [32]byte
	v := r.tx.Bucket(bucketClaims).Get(name[:])
	if v == nil {
		return req, false, nil
	}
	if len(v) != len(req) {
		return req, false, errCorrupt
	}
	copy(req[:], v)
	return req, true, nil
}

func (r boltReader) history(key consent.Key) ([]storedEvent, error) {
	var out []storedEvent
	prefix := boltEventPrefix(key)
	c := r.tx.Bucket(bucketContacts).Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if len(k) == len(prefix)+8 {
			out = append(out, storedEvent{seq: binary.BigEndian.Uint64(k[len(prefix):]), entry: v})
		}
	}
	return out, nil
}

// store writes a plan inside its transaction, its puts in key order:
// contact keys are keyed hashes, random, and bbolt inserts in order far
// faster than at random.
func (s *Embedded) store(tx *bolt.Tx, pl *batchPlan) error {
	contacts, meta := tx.Bucket(bucketContacts), tx.Bucket(bucketMeta)
	type kv struct{ k, v []byte }
	var puts []kv
	erased := map[int]bool{}
	for n, o := range pl.ops {
		key := pl.contacts[o.contact].key
		if o.erase {
			// The stored history goes (its tombstones are in the entry);
			// so do the entries of this batch before the erasure.
			prefix := boltEventPrefix(key)
			if !erased[o.contact] {
				erased[o.contact] = true
				if err := deletePrefix(contacts, prefix); err != nil {
					return err
				}
			}
			puts = slices.DeleteFunc(puts, func(p kv) bool { return bytes.HasPrefix(p.k, prefix) })
		}
		puts = append(puts, kv{boltEventKey(key, pl.head+uint64(n)+1), o.entry})
	}
	for _, pc := range pl.contacts {
		if pc.changed {
			puts = append(puts, kv{boltRecordKey(pc.key), EncodeRecord(nil, &pc.rec)})
		}
	}
	for _, r := range pl.requests {
		if !r.replay {
			puts = append(puts, kv{boltRequestKey(pl.contacts[r.contact].key, r.id), requestValue(r.fp, r.tok)})
		}
	}
	slices.SortFunc(puts, func(a, b kv) int { return bytes.Compare(a.k, b.k) })
	for _, p := range puts {
		if err := contacts.Put(p.k, p.v); err != nil {
			return err
		}
	}
	claims := tx.Bucket(bucketClaims)
	for _, c := range pl.claims {
		if err := claims.Put(c.name[:], c.request[:]); err != nil {
			return err
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

// notify reports a committed write once every earlier one has been reported.
func (s *Embedded) notify(key consent.Key, tok consent.ConsistencyToken) {
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
func (s *Embedded) Events(ctx context.Context, key consent.Key, after consent.ConsistencyToken, limit int) ([]consent.Event, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	var (
		out  []consent.Event
		more bool
	)
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketContacts).Cursor()
		prefix := boltEventPrefix(key)
		for k, v := c.Seek(boltEventKey(key, after.Seq+1)); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if len(out) == limit {
				more = true
				return nil
			}
			e, err := decodeStoredEvent(v)
			if err != nil {
				return err
			}
			e.Token = consent.ConsistencyToken{Seq: binary.BigEndian.Uint64(k[len(prefix):])}
			out = append(out, e)
		}
		return nil
	})
	return out, more, err
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

func requestValue(fp [32]byte, tok consent.ConsistencyToken) []byte {
	return appendToken(fp[:len(fp):len(fp)], tok)
}

// checkReplay returns the first token of a request seen before, or a
// FieldError when the same id came with a different request.
func checkReplay(v []byte, fp [32]byte) (consent.ConsistencyToken, error) {
	if len(v) < len(fp) {
		return consent.ConsistencyToken{}, errCorrupt
	}
	if !bytes.Equal(v[:len(fp)], fp[:]) {
		return consent.ConsistencyToken{}, consent.Invalid("request_id", "was already used for a different request")
	}
	d := decoder{b: v[len(fp):]}
	tok := d.token()
	return tok, d.finish()
}

// verifyChunk is how many keys VerifyHistory reads per read transaction:
// a long one would hold back every write that grows the file, and every
// read queued behind that write.
const verifyChunk = 20000

// VerifyHistory walks the chain of the store's one partition and checks
// every record against its history, a chunk of keys per read transaction.
// The head is read first, and what is written after it is left for the
// next run; an erasure during the walk can show as a missing event.
func (s *Embedded) VerifyHistory(ctx context.Context) ([]consent.PartitionHistory, error) {
	var rep consent.PartitionHistory
	err := s.db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if v := meta.Get(metaSeq); len(v) == 8 {
			rep.HeadSeq = binary.BigEndian.Uint64(v)
		}
		copy(rep.HeadLink[:], meta.Get(metaHead))
		return nil
	})
	if err != nil {
		return nil, err
	}
	w := s.chain.Walk(0)
	// A contact's keys are one run: its events oldest first, its request
	// ids, then its record. A run may span chunks.
	var (
		contact consent.Key
		history []storedEvent
		rec     *consent.Record
		corrupt bool // the record is, and its break noted
		started bool
	)
	check := func() {
		if started && (rec != nil || len(history) > 0 || corrupt) {
			rep.Contacts++
			checkContact(w, rep.HeadSeq, contact, rec, history, !corrupt)
		}
		history, rec, corrupt = history[:0], nil, false
	}
	var next []byte // where the next chunk starts; nil: the first key
	for done := false; !done; {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		err := s.db.View(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketContacts).Cursor()
			k, v := c.First()
			if next != nil {
				k, v = c.Seek(next)
			}
			for n := 0; k != nil; k, v = c.Next() {
				if n++; n > verifyChunk {
					next = bytes.Clone(k)
					return nil
				}
				if len(k) <= len(contact) {
					w.Problem(0, "a key of the store is malformed")
					continue
				}
				if !started || !bytes.Equal(k[:len(contact)], contact[:]) {
					check()
					copy(contact[:], k)
					started = true
				}
				switch rest := k[len(contact):]; {
				case rest[0] == tagEvent && len(rest) == 9:
					// Kept past this transaction: copied out of the file.
					history = append(history, storedEvent{seq: binary.BigEndian.Uint64(rest[1:]), entry: bytes.Clone(v)})
				case rest[0] == tagRecord && len(rest) == 1:
					r, err := DecodeRecord(v)
					if err != nil {
						w.Problem(r.Token.Seq, "a contact's record is corrupt")
						corrupt = true
						continue
					}
					rec = &r
				case rest[0] == tagRequest:
				default:
					w.Problem(0, "a key of the store is malformed")
				}
			}
			done = true
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	check()
	if err := finish(ctx, &rep, w); err != nil {
		return nil, err
	}
	return []consent.PartitionHistory{rep}, nil
}
