//go:build ignore

// gen writes the stores in this folder: "a store written by today's main",
// i.e. by consentd before issue 17 (embedded layout contacts-v1, Redis
// layout chain-v2, contacts keyed HMAC-SHA256(secret, contactkey.Normalise(raw))).
// README.md says what they hold and how to rebuild them.
//
// It must run against the store code of that version (the commit README.md
// names), not against a newer one, which writes newer layouts:
//
//	git worktree add /tmp/today <commit> && cd /tmp/today
//	go run ./internal/migrate/testdata/today/gen.go -out "$OLDPWD/internal/migrate/testdata/today"
//
// It writes through the store package, not through consentd: today's contact
// rule (consent.CheckContact) refuses a spaced phone number such as
// "+44 20 7946 0958", which senders did write into their own systems. So the
// keys are computed as today's contactkey.Keyer computes them, bypassing only
// that check. The secret and every time are fixed; only the store ids (random,
// made when a store is) differ from one run to the next.
package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/redis/go-redis/v9"
	bolt "go.etcd.io/bbolt"

	"github.com/consentd/consentd/consent"
	"github.com/consentd/consentd/internal/chain"
	"github.com/consentd/consentd/internal/contactkey"
	"github.com/consentd/consentd/internal/redisproc"
	"github.com/consentd/consentd/store"
)

// secret is the contact-key secret of both stores (32 bytes): a test
// secret, published here.
var secret = []byte("consentd issue 17 migration data")

// day is when the history starts; each event is some hours after it.
var day = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

type event struct {
	raw     string // the spelling a sender wrote
	kind    consent.EventKind
	purpose string // "" for an erasure
	hours   int    // after day
}

// events, in the order written. README.md lists them with what a migration
// must make of them.
var events = []event{
	// A phone number in two spellings: the yes under one, the later no under
	// the other (issue 17's first case).
	{"+44 20 7946 0958", consent.EventGrant, "email_marketing", 1},
	{"+442079460958", consent.EventWithdraw, "email_marketing", 5},
	// Case already folds today: one key.
	{"Ada@Example.COM", consent.EventGrant, "email_marketing", 2},
	{"ada@example.com", consent.EventGrant, "sales_outreach", 3},
	// An IDN domain in Unicode and in punycode: two keys today.
	{"lena@bücher.example", consent.EventGrant, "email_marketing", 2},
	{"lena@xn--bcher-kva.example", consent.EventWithdraw, "email_marketing", 6},
	// A person erased under one spelling who has a later yes under the
	// other: the erasure must win.
	{"+44 161 496 0000", consent.EventErase, "", 4},
	{"+441614960000", consent.EventGrant, "email_marketing", 7},
	// Canonical already, with a grant: the migration leaves it as it is.
	{"grace@example.org", consent.EventGrant, "email_marketing", 2},
	// Not a valid phone number (no such country code): the new parser
	// refuses it.
	{"+999 1234 5678", consent.EventGrant, "email_marketing", 3},
}

// legacyKey is today's contactkey.Keyer.Key without its contact check.
func legacyKey(raw string) consent.Key {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(contactkey.Normalise(raw)))
	var k consent.Key
	copy(k[:], m.Sum(nil))
	return k
}

func writes() []consent.Write {
	var ws []consent.Write
	for i, e := range events {
		at := day.Add(time.Duration(e.hours) * time.Hour)
		ev := consent.Event{Kind: e.kind, RequestID: fmt.Sprintf("gen-%02d", i),
			Proof: consent.Proof{CapturedAt: at, RecordedAt: at, Actor: "testdata-gen", Source: consent.SourceFirstParty}}
		if e.purpose != "" {
			ev.Purposes = []string{e.purpose}
		}
		if e.kind == consent.EventGrant {
			ev.Proof.Method, ev.Proof.NoticeVersion, ev.Proof.EvidenceRef = consent.MethodCheckbox, "2026-01", fmt.Sprintf("form:gen-%02d", i)
		}
		ws = append(ws, consent.Write{Key: legacyKey(e.raw), Event: ev, Fingerprint: sha256.Sum256([]byte(ev.RequestID))})
	}
	return ws
}

type applier interface {
	Apply(ctx context.Context, w consent.Write) (consent.ConsistencyToken, error)
}

// apply writes one event at a time, as consentd's handlers did.
func apply(ctx context.Context, st applier) error {
	for i, w := range writes() {
		if _, err := st.Apply(ctx, w); err != nil {
			return fmt.Errorf("event %d: %w", i, err)
		}
	}
	return nil
}

// compact rewrites dir's consent.db without its free pages: bbolt grows a
// file in steps of 16 MiB, which the test data need not carry.
func compact(dir string) error {
	path := filepath.Join(dir, store.EmbeddedFile)
	src, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := bolt.Open(path+".compact", 0o600, nil)
	if err != nil {
		return err
	}
	if err := bolt.Compact(dst, src, 0); err != nil {
		dst.Close()
		return err
	}
	if err := dst.Close(); err != nil {
		return err
	}
	return os.Rename(path+".compact", path)
}

func main() {
	out := flag.String("out", ".", "the folder to write embedded/ and redis/ into")
	flag.Parse()
	ctx := context.Background()
	ch, err := chain.NewKey(secret)
	if err != nil {
		log.Fatal(err)
	}
	keys, err := contactkey.New(secret)
	if err != nil {
		log.Fatal(err)
	}

	dir := filepath.Join(*out, "embedded")
	if err := os.RemoveAll(dir); err != nil {
		log.Fatal(err)
	}
	emb, err := store.OpenEmbedded(dir, ch)
	if err != nil {
		log.Fatal(err)
	}
	if err := apply(ctx, emb); err != nil {
		log.Fatal(err)
	}
	if err := emb.Close(); err != nil {
		log.Fatal(err)
	}
	if err := compact(dir); err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "secret"), secret, 0o600); err != nil {
		log.Fatal(err)
	}

	tmp, err := os.MkdirTemp("", "gen-redis-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	srv, err := redisproc.Start(tmp, redisproc.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Kill()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	rs, err := store.OpenRedis(ctx, rdb, store.RedisConfig{Partitions: 16, SecretCheck: keys.Check(), Chain: ch, Init: true})
	if err != nil {
		log.Fatal(err)
	}
	if err := apply(ctx, rs); err != nil {
		log.Fatal(err)
	}
	// The request ids expire a week after they were written, so a dump
	// loaded later has none: nothing here needs them.
	if err := rdb.Save(ctx).Err(); err != nil {
		log.Fatal(err)
	}
	if err := srv.Stop(); err != nil {
		log.Fatal(err)
	}
	rdir := filepath.Join(*out, "redis")
	if err := os.MkdirAll(rdir, 0o755); err != nil {
		log.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(tmp, "dump.rdb"))
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rdir, "dump.rdb"), b, 0o644); err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rdir, "secret"), secret, 0o600); err != nil {
		log.Fatal(err)
	}
	fmt.Println("wrote", dir, "and", rdir)
}
