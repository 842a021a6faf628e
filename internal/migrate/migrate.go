// Package migrate re-keys a store written before issue 17, whose contacts
// are keyed by the string as the sender spelled it (LegacyKey), to keys of
// canonical identifiers, merging the records of spellings of one identifier
// with the most restrictive latest state winning (consent.MergeSpellings).
// Keys are one-way, so the operator supplies the identifiers as their
// systems wrote them; what no supplied line reaches is counted, not guessed.
// consentctl migrate is its command line; consentd is stopped meanwhile.
package migrate

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/consentd/consentd/consent"
)

// Store is what a migration needs of a store opened to be migrated
// (store.EmbeddedConfig.Migrating, store.RedisConfig.Migrating).
type Store interface {
	GetMany(ctx context.Context, keys []consent.Key, out []consent.Record) error
	ApplyBatch(ctx context.Context, ws []consent.Write) ([]consent.ConsistencyToken, []error, error)
	// RecordKeys calls fn with the key of every record; concurrently on a
	// Redis Cluster.
	RecordKeys(ctx context.Context, fn func(consent.Key) error) error
	// StampLayout gives the store the current layout; nothing when it has
	// it already.
	StampLayout(ctx context.Context) error
	Migrated() bool
}

// Keyer keys a canonical identifier (contactkey.Keyer).
type Keyer interface {
	Identify(contact string) (consent.Key, consent.IDKind, error)
}

// Actor names the migration in the proof of the events it records.
const Actor = "consentctl migrate"

// getChunk is how many records one GetMany reads.
const getChunk = 512

// Input is one supplied line, keyed: the raw identifier is dropped as soon
// as it is keyed, so neither the plan nor the report ever holds one.
type Input struct {
	Line    int
	Old     consent.Key // LegacyKey
	New     consent.Key // the canonical identifier's key; zero when Problem
	Kind    consent.IDKind
	Problem string // why the identifier was refused; "" when parsed
}

// KeyInput keys one supplied line.
func KeyInput(secret []byte, k Keyer, line int, contact string) Input {
	in := Input{Line: line, Old: LegacyKey(secret, contact)}
	key, kind, err := k.Identify(contact)
	if err != nil {
		in.Problem = "contact: " + err.Error()
		return in
	}
	in.New, in.Kind = key, kind
	return in
}

// Report is what a migration found, planned and (with Apply) did. Lines are
// named by number and identifiers by kind: never by their text.
type Report struct {
	Applied bool `json:"applied"`
	// Migrated: the store had the current layout before this run.
	Migrated bool       `json:"already_migrated"`
	Lines    int        `json:"lines"`
	Merged   []Group    `json:"merged"`
	Unparsed []Unparsed `json:"unparsed"`
	// Records is how many records the store holds; Unreached how many of
	// them no supplied line's spelling (legacy or canonical) keys.
	Records   int       `json:"records"`
	Unreached int       `json:"unreached"`
	Lost      []LostYes `json:"lost"`
	// Writes is how many events the migration writes (or, dry, would).
	Writes int `json:"writes"`
}

// Group is one canonical identifier whose spellings hold records under
// other keys.
type Group struct {
	Lines []int  `json:"lines"` // every supplied line of the identifier
	Kind  string `json:"kind"`
	// Spellings is how many records under other keys are merged into the
	// canonical identifier's.
	Spellings int  `json:"spellings"`
	Erased    bool `json:"erased,omitempty"` // erased at migration time
	// Withdrawn are the purposes withdrawn at migration time, each of which
	// had a yes under one spelling and a no under another.
	Withdrawn []string `json:"withdrawn,omitempty"`
	// Done says an earlier run merged it already: nothing is written.
	Done bool `json:"already_merged,omitempty"`

	canon []consent.Write // on the canonical key: the merge, then the rectifications
	old   []consent.Write // one rectification on each old key
}

// Unparsed is a supplied line the migration cannot use.
type Unparsed struct {
	Line    int    `json:"line"`
	Problem string `json:"problem"`
}

// LostYes is a yes that lost to a withdrawal or an erasure under another
// spelling: the person must be asked again.
type LostYes struct {
	Lines   []int  `json:"lines"` // the lines of the spelling that held it
	Purpose string `json:"purpose"`
	To      string `json:"lost_to"` // "withdrawal" or "erasure"
}

// Plan reads the store and plans the migration of the supplied lines, at
// time at (the time of every event it records). Each store call has
// timeout as its deadline.
func Plan(ctx context.Context, st Store, inputs []Input, at time.Time, timeout time.Duration) (*Report, error) {
	rep := &Report{Migrated: st.Migrated(), Lines: len(inputs), Merged: []Group{}, Unparsed: []Unparsed{}, Lost: []LostYes{}}
	byNew := map[consent.Key][]int{} // the inputs of each canonical key, in line order
	var order []consent.Key
	newOf := map[consent.Key]consent.Key{} // an old key's canonical key
	linesOf := map[consent.Key][]int{}     // the lines of each old key
	for i, in := range inputs {
		if in.Problem != "" {
			rep.Unparsed = append(rep.Unparsed, Unparsed{in.Line, in.Problem})
			continue
		}
		if byNew[in.New] == nil {
			order = append(order, in.New)
		}
		byNew[in.New] = append(byNew[in.New], i)
		linesOf[in.Old] = append(linesOf[in.Old], in.Line)
	}
	// One old key is one legacy spelling; two canonical identifiers for it
	// would be a parser that reads case or spaces as meaning: refuse to
	// guess which.
	conflict := map[consent.Key]bool{}
	for _, in := range inputs {
		if in.Problem != "" {
			continue
		}
		if n, ok := newOf[in.Old]; ok && n != in.New {
			conflict[in.Old] = true
		}
		newOf[in.Old] = in.New
	}
	for _, in := range inputs {
		if in.Problem == "" && conflict[in.Old] {
			rep.Unparsed = append(rep.Unparsed, Unparsed{in.Line, "spellings that were one contact before are two identifiers now; not merged"})
		}
	}
	slices.SortFunc(rep.Unparsed, func(a, b Unparsed) int { return a.Line - b.Line })

	reached := map[consent.Key]bool{}
	for _, in := range inputs {
		reached[in.Old] = true
		if in.Problem == "" {
			reached[in.New] = true
		}
	}
	var keys []consent.Key
	for k := range reached {
		keys = append(keys, k)
	}
	recs, err := readRecords(ctx, st, keys, timeout)
	if err != nil {
		return nil, err
	}
	if err := countRecords(ctx, st, reached, rep, timeout); err != nil {
		return nil, err
	}

	for _, n := range order {
		var g Group
		var olds []consent.Key // old keys with a record still to merge
		var pendingTo []consent.Key
		seen := map[consent.Key]bool{n: true}
		for _, i := range byNew[n] {
			in := inputs[i]
			g.Lines = append(g.Lines, in.Line)
			g.Kind = in.Kind.String()
			if seen[in.Old] || conflict[in.Old] || byNew[in.Old] != nil {
				// The canonical key itself, a spelling seen already, or
				// another identifier's canonical key.
				continue
			}
			seen[in.Old] = true
			old, ok := recs[in.Old]
			if !ok || old.Token.Seq == 0 {
				continue
			}
			canon := recs[n]
			switch {
			case old.Linked(n):
				// Rectified to the canonical key already: done.
				g.Spellings++
			case canon.Linked(in.Old):
				// The canonical side was written and the run cut short
				// before the old side: only that is left.
				g.Spellings++
				pendingTo = append(pendingTo, in.Old)
			default:
				g.Spellings++
				olds = append(olds, in.Old)
				pendingTo = append(pendingTo, in.Old)
			}
		}
		if g.Spellings == 0 {
			continue
		}
		kind := inputs[byNew[n][0]].Kind
		if len(olds) > 0 {
			spellings := []consent.Record{recs[n]}
			for _, o := range olds {
				spellings = append(spellings, recs[o])
			}
			m := consent.MergeSpellings(spellings, at, consent.Proof{Actor: Actor, Source: consent.SourceFirstParty})
			// The ids name the spellings merged: a later run that is
			// given another spelling of n merges other events, which must
			// not be taken for this merge's (a replay writes nothing).
			merged := mergeID(olds)
			for i, e := range m.Events {
				if e.Kind == consent.EventErase {
					g.Erased = true
				}
				if e.Kind == consent.EventWithdraw && e.Proof.CapturedAt.Equal(at) {
					g.Withdrawn = append(g.Withdrawn, e.Purposes...)
				}
				g.canon = append(g.canon, write(n, e, fmt.Sprintf("migrate-%s-%s-%d", short(n), merged, i)))
			}
			for _, o := range olds {
				e := consent.Event{Kind: consent.EventRectifyFrom, Other: consent.Link{Key: o, Kind: kind},
					Proof: consent.Proof{Actor: Actor, CapturedAt: at, RecordedAt: at}}
				g.canon = append(g.canon, write(n, e, fmt.Sprintf("migrate-%s-from-%s", short(n), short(o))))
			}
			for _, l := range m.Lost {
				k := n
				if l.Spelling > 0 {
					k = olds[l.Spelling-1]
				}
				to := "withdrawal"
				if g.Erased {
					to = "erasure"
				}
				lines := linesOf[k]
				if len(lines) == 0 { // the canonical spelling, not supplied
					lines = g.Lines
				}
				rep.Lost = append(rep.Lost, LostYes{Lines: lines, Purpose: l.Purpose, To: to})
			}
		}
		for _, o := range pendingTo {
			e := consent.Event{Kind: consent.EventRectifyTo, Other: consent.Link{Key: n, Kind: kind},
				Proof: consent.Proof{Actor: Actor, CapturedAt: at, RecordedAt: at}}
			g.old = append(g.old, write(o, e, fmt.Sprintf("migrate-%s-to-%s", short(o), short(n))))
		}
		g.Done = len(g.canon) == 0 && len(g.old) == 0
		rep.Writes += len(g.canon) + len(g.old)
		rep.Merged = append(rep.Merged, g)
	}
	return rep, nil
}

// Apply writes what Plan planned, group by group: the canonical key's
// events in one batch (one atomic write, on either store), then the old
// keys' rectifications; and stamps the store's current layout last, once
// every group is merged. Run again after it was cut short, a plan made
// afresh skips what was written (see Plan), and the request ids, derived
// from the keys, make a write sent twice count once.
func Apply(ctx context.Context, st Store, rep *Report, timeout time.Duration) error {
	for i := range rep.Merged {
		g := &rep.Merged[i]
		for _, ws := range [][]consent.Write{g.canon, g.old} {
			if len(ws) == 0 {
				continue
			}
			if err := applyBatch(ctx, st, ws, timeout); err != nil {
				return fmt.Errorf("merging lines %v: %w", g.Lines, err)
			}
		}
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := st.StampLayout(cctx); err != nil {
		return fmt.Errorf("stamping the layout: %w", err)
	}
	rep.Applied = true
	return nil
}

func applyBatch(ctx context.Context, st Store, ws []consent.Write, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_, errs, err := st.ApplyBatch(ctx, ws)
	if err != nil {
		return err
	}
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func readRecords(ctx context.Context, st Store, keys []consent.Key, timeout time.Duration) (map[consent.Key]consent.Record, error) {
	out := make(map[consent.Key]consent.Record, len(keys))
	recs := make([]consent.Record, getChunk)
	for len(keys) > 0 {
		chunk := keys[:min(getChunk, len(keys))]
		keys = keys[len(chunk):]
		cctx, cancel := context.WithTimeout(ctx, timeout)
		err := st.GetMany(cctx, chunk, recs[:len(chunk)])
		cancel()
		if err != nil {
			return nil, err
		}
		for i, k := range chunk {
			out[k] = recs[i]
		}
	}
	return out, nil
}

// countRecords counts the store's records and those no input reaches, in
// one walk bounded by timeout (as verify's: a large store needs a longer
// one).
func countRecords(ctx context.Context, st Store, reached map[consent.Key]bool, rep *Report, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var mu sync.Mutex // RecordKeys calls concurrently on a Cluster
	return st.RecordKeys(ctx, func(k consent.Key) error {
		mu.Lock()
		defer mu.Unlock()
		rep.Records++
		if !reached[k] {
			rep.Unreached++
		}
		return nil
	})
}

func write(key consent.Key, e consent.Event, id string) consent.Write {
	e.RequestID = id
	// The fingerprint is the request id's alone: a run made again at
	// another time sends the same ids, and must replay, not be refused.
	return consent.Write{Key: key, Event: e, Fingerprint: sha256.Sum256([]byte("consentctl migrate\x00" + id))}
}

// mergeID names the set of old keys a merge folds in, for its request
// ids: whatever order the lines gave them in.
func mergeID(olds []consent.Key) string {
	sorted := slices.Clone(olds)
	slices.SortFunc(sorted, func(a, b consent.Key) int { return bytes.Compare(a[:], b[:]) })
	h := sha256.New()
	for _, o := range sorted {
		h.Write(o[:])
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// short names a key in a request id: 64 bits of it are plenty to keep one
// store's few merges apart.
func short(k consent.Key) string { return hex.EncodeToString(k[:8]) }
