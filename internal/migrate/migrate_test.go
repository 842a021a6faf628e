package migrate_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/consentd/consentd/consent"
	"github.com/consentd/consentd/internal/chain"
	"github.com/consentd/consentd/internal/contactkey"
	"github.com/consentd/consentd/internal/migrate"
	"github.com/consentd/consentd/internal/redistest"
	"github.com/consentd/consentd/store"
)

// today is the test data: a store written by the version before issue 17
// (testdata/today/README.md).
const today = "testdata/today"

// migrating is a store opened to be migrated, as consentctl opens it.
type migrating interface {
	migrate.Store
	Get(ctx context.Context, key consent.Key) (consent.Record, error)
	VerifyHistory(ctx context.Context) ([]consent.PartitionHistory, error)
	KeyScheme() string
}

func secret(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(today, "embedded", "secret"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func keyer(t *testing.T) *contactkey.Keyer {
	t.Helper()
	k, err := contactkey.New(secret(t))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func chainKey(t *testing.T) *chain.Key {
	t.Helper()
	ch, err := chain.NewKey(secret(t))
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

// inputs keys testdata/today/contacts.txt as consentctl migrate does.
func inputs(t *testing.T) []migrate.Input {
	t.Helper()
	f, err := os.Open(filepath.Join(today, "contacts.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	k := keyer(t)
	var in []migrate.Input
	if err := migrate.ReadContacts(f, "", func(line int, contact string) error {
		in = append(in, migrate.KeyInput(secret(t), k, line, contact))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return in
}

// copyEmbedded opens a copy of the test data's embedded store.
func copyEmbedded(t *testing.T, c store.EmbeddedConfig) *store.Embedded {
	t.Helper()
	dir := t.TempDir()
	b, err := os.ReadFile(filepath.Join(today, "embedded", store.EmbeddedFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, store.EmbeddedFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := store.OpenEmbeddedConfig(dir, chainKey(t), c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func TestEmbeddedRefusesUnmigrated(t *testing.T) {
	dir := t.TempDir()
	b, err := os.ReadFile(filepath.Join(today, "embedded", store.EmbeddedFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, store.EmbeddedFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := store.OpenEmbedded(dir, chainKey(t))
	if err == nil {
		st.Close()
		t.Fatal("opened a store of the legacy layout to serve it")
	}
	if !strings.Contains(err.Error(), "contacts-v1") || !strings.Contains(err.Error(), "consentctl migrate") {
		t.Errorf("error %q does not name the layout and the command", err)
	}
}

func TestMigrateEmbedded(t *testing.T) {
	testMigrate(t, func(t *testing.T) migrating { return copyEmbedded(t, store.EmbeddedConfig{Migrating: true}) })
}

func TestMigrateRedis(t *testing.T) {
	testMigrate(t, func(t *testing.T) migrating {
		srv := redistest.StartFromDump(t, filepath.Join(today, "redis", "dump.rdb"))
		return openRedis(t, srv.Client(t))
	})
}

func TestMigrateRedisCluster(t *testing.T) {
	testMigrate(t, func(t *testing.T) migrating {
		srv := redistest.StartFromDump(t, filepath.Join(today, "redis", "dump.rdb"))
		c := redistest.StartCluster(t, 3)
		c.CopyKeys(t, srv)
		return openRedis(t, c.Client(t))
	})
}

func openRedis(t *testing.T, rdb redis.UniversalClient) migrating {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := store.OpenRedis(ctx, rdb, store.RedisConfig{Partitions: 16, SecretCheck: keyer(t).Check(), Chain: chainKey(t), Migrating: true})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// heads is every partition's newest event: a write moves one.
func heads(t *testing.T, st migrating) []uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ps, err := st.VerifyHistory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []uint64
	for _, p := range ps {
		out = append(out, p.HeadSeq)
		if p.BreakCount != 0 {
			t.Errorf("partition %d: %d breaks in the history: %v", p.Partition, p.BreakCount, p.Breaks)
		}
	}
	return out
}

func testMigrate(t *testing.T, open func(*testing.T) migrating) {
	ctx := context.Background()
	st := open(t)
	k := keyer(t)
	at := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	const timeout = 10 * time.Second
	start := heads(t, st)

	rep, err := migrate.Plan(ctx, st, inputs(t), at, timeout)
	if err != nil {
		t.Fatal(err)
	}
	// The report of testdata/today/contacts.txt (README.md says why).
	type group struct {
		lines     []int
		kind      string
		erased    bool
		withdrawn []string
	}
	var gotGroups []group
	for _, g := range rep.Merged {
		gotGroups = append(gotGroups, group{g.Lines, g.Kind, g.Erased, g.Withdrawn})
		if g.Spellings != 1 || g.Done {
			t.Errorf("group %v: %d spellings merged, done %v; want 1, not done", g.Lines, g.Spellings, g.Done)
		}
	}
	wantGroups := []group{
		{[]int{1, 2}, "phone", false, []string{"email_marketing"}},
		{[]int{5, 6}, "email", false, []string{"email_marketing"}},
		{[]int{7, 8}, "phone", true, nil},
	}
	if !slices.EqualFunc(gotGroups, wantGroups, func(a, b group) bool {
		return slices.Equal(a.lines, b.lines) && a.kind == b.kind && a.erased == b.erased && slices.Equal(a.withdrawn, b.withdrawn)
	}) {
		t.Errorf("merged:\n got %+v\nwant %+v", gotGroups, wantGroups)
	}
	if len(rep.Unparsed) != 1 || rep.Unparsed[0].Line != 10 || !strings.HasPrefix(rep.Unparsed[0].Problem, "contact: ") {
		t.Errorf("unparsed: got %+v, want line 10 with the parser's problem", rep.Unparsed)
	}
	var gotLost []string
	for _, l := range rep.Lost {
		gotLost = append(gotLost, fmt.Sprintf("%v %s %s", l.Lines, l.Purpose, l.To))
	}
	wantLost := []string{"[1] email_marketing withdrawal", "[5] email_marketing withdrawal", "[8] email_marketing erasure"}
	if !slices.Equal(gotLost, wantLost) {
		t.Errorf("lost:\n got %q\nwant %q", gotLost, wantLost)
	}
	if rep.Records != 9 || rep.Unreached != 0 || rep.Writes != 9 || rep.Migrated {
		t.Errorf("records %d, unreached %d, writes %d, migrated %v; want 9, 0, 9, false", rep.Records, rep.Unreached, rep.Writes, rep.Migrated)
	}
	if got := heads(t, st); !slices.Equal(got, start) {
		t.Fatalf("the dry run wrote: heads %v, were %v", got, start)
	}

	if err := migrate.Apply(ctx, st, rep, timeout); err != nil {
		t.Fatal(err)
	}
	if !st.Migrated() || st.KeyScheme() != string(contactkey.SchemeHMACSHA256) {
		t.Errorf("after --apply: migrated %v, scheme %q; want true, %q", st.Migrated(), st.KeyScheme(), contactkey.SchemeHMACSHA256)
	}
	applied := heads(t, st) // and the history verifies

	reg, err := consent.NewRegistry(consent.DefaultPurposes())
	if err != nil {
		t.Fatal(err)
	}
	now := at.Add(time.Hour)
	decide := func(key consent.Key, purpose string) consent.Decision {
		rec, err := st.Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		p, ok := reg.Lookup(purpose)
		if !ok {
			t.Fatalf("no purpose %s", purpose)
		}
		return consent.Decide(&rec, p, now)
	}
	canonical := func(raw string) consent.Key {
		key, err := k.Key(raw)
		if err != nil {
			t.Fatal(err)
		}
		return key
	}
	for _, tt := range []struct {
		spelling, purpose string
		want              consent.Decision
	}{
		{"+44 20 7946 0958", "email_marketing", consent.Decision{Reason: consent.ReasonWithdrawn}},
		{"+442079460958", "email_marketing", consent.Decision{Reason: consent.ReasonWithdrawn}},
		{"lena@bücher.example", "email_marketing", consent.Decision{Reason: consent.ReasonWithdrawn}},
		{"lena@xn--bcher-kva.example", "email_marketing", consent.Decision{Reason: consent.ReasonWithdrawn}},
		{"+44 161 496 0000", "email_marketing", consent.Decision{Reason: consent.ReasonErased}},
		{"+441614960000", "email_marketing", consent.Decision{Reason: consent.ReasonErased}},
		{"Ada@Example.COM", "email_marketing", consent.Decision{Allowed: true, Reason: consent.ReasonGranted}},
		{"ada@example.com", "sales_outreach", consent.Decision{Allowed: true, Reason: consent.ReasonGranted}},
		{"grace@example.org", "email_marketing", consent.Decision{Allowed: true, Reason: consent.ReasonGranted}},
	} {
		if got := decide(canonical(tt.spelling), tt.purpose); got != tt.want {
			t.Errorf("%s %s: got %+v, want %+v", tt.spelling, tt.purpose, got, tt.want)
		}
	}
	// The old keys keep their history, name the new key and stay
	// withdrawn, so nothing reads a yes there either.
	for _, old := range []string{"+44 20 7946 0958", "lena@bücher.example", "+44 161 496 0000"} {
		rec, err := st.Get(ctx, migrate.LegacyKey(secret(t), old))
		if err != nil {
			t.Fatal(err)
		}
		if !rec.Linked(canonical(old)) || rec.WithdrawnAllAt.IsZero() {
			t.Errorf("old key of %s: linked to the new one %v, withdrawn at %v; want linked and withdrawn", old, rec.Linked(canonical(old)), rec.WithdrawnAllAt)
		}
	}

	// Again, at another time: nothing to write.
	again, err := migrate.Plan(ctx, st, inputs(t), at.Add(time.Hour), timeout)
	if err != nil {
		t.Fatal(err)
	}
	if again.Writes != 0 || !again.Migrated || len(again.Lost) != 0 {
		t.Errorf("second run: %d writes, migrated %v, %d lost; want 0, true, 0", again.Writes, again.Migrated, len(again.Lost))
	}
	for _, g := range again.Merged {
		if !g.Done {
			t.Errorf("second run: group %v not done", g.Lines)
		}
	}
	if err := migrate.Apply(ctx, st, again, timeout); err != nil {
		t.Fatal(err)
	}
	if got := heads(t, st); !slices.Equal(got, applied) {
		t.Errorf("the second --apply wrote: heads %v, were %v", got, applied)
	}
}

// TestRedisOldSidecarRefusedAfterStamp: a sidecar of the previous version
// still running when the migration stamps the layout writes nothing more.
// Its writes carry the legacy marker id (the bare store id), which the
// write script compares with the partition's marker in the same script
// that writes; a store opened to be migrated and not yet stamped writes
// with exactly that id, so it stands for the old sidecar here.
func TestRedisOldSidecarRefusedAfterStamp(t *testing.T) {
	ctx := context.Background()
	srv := redistest.StartFromDump(t, filepath.Join(today, "redis", "dump.rdb"))
	old := openRedis(t, srv.Client(t))
	grant := func(st migrating, id string) error {
		k := keyer(t)
		key, err := k.Key("grace@example.org")
		if err != nil {
			t.Fatal(err)
		}
		_, errs, err := st.ApplyBatch(ctx, []consent.Write{{Key: key, Event: consent.Event{Kind: consent.EventGrant, Purposes: []string{"sales_outreach"}, RequestID: id,
			Proof: consent.Proof{Method: consent.MethodCheckbox, Source: consent.SourceFirstParty, CapturedAt: time.Now(), RecordedAt: time.Now()}}}})
		if err != nil {
			return err
		}
		return errs[0]
	}
	if err := grant(old, "before"); err != nil {
		t.Fatalf("the old sidecar's write before the migration: %v", err)
	}
	mig := openRedis(t, srv.Client(t))
	rep, err := migrate.Plan(ctx, mig, inputs(t), time.Now(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := migrate.Apply(ctx, mig, rep, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	err = grant(old, "after")
	if !errors.Is(err, store.ErrStoreLost) || !strings.Contains(err.Error(), "holds another store's id") {
		t.Fatalf("the old sidecar's write after the stamp: %v; want ErrStoreLost naming the marker", err)
	}
	// The new version serves it, and writes.
	cur, err := store.OpenRedis(ctx, srv.Client(t), store.RedisConfig{Partitions: 16, SecretCheck: keyer(t).Check(), Chain: chainKey(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := grant(cur, "new"); err != nil {
		t.Fatalf("this version's write after the migration: %v", err)
	}
}

// TestRedisStampCutShort: a stamp cut short after some partition markers
// (the layout mark still legacy) leaves a store this version refuses as
// unmigrated; a dry run leaves it so, and the next --apply finishes it.
func TestRedisStampCutShort(t *testing.T) {
	ctx := context.Background()
	srv := redistest.StartFromDump(t, filepath.Join(today, "redis", "dump.rdb"))
	rdb := srv.Client(t)
	mark, err := rdb.Get(ctx, "consentd:layout").Result()
	if err != nil {
		t.Fatal(err)
	}
	id := strings.TrimPrefix(mark, "chain-v2/")
	// Cut short after the partitions of two keys the merges write: one
	// canonical, one old.
	canon, err := keyer(t).Key("+442079460958")
	if err != nil {
		t.Fatal(err)
	}
	cut := map[uint32]bool{canon.Partition(16): true, migrate.LegacyKey(secret(t), "+44 161 496 0000").Partition(16): true}
	for p := range cut {
		if err := rdb.HSet(ctx, fmt.Sprintf("{%d}:i", p), "id", "chain-v3/"+id).Err(); err != nil {
			t.Fatal(err)
		}
	}
	markers := func() []string {
		var out []string
		for p := range 16 {
			got, err := rdb.HGet(ctx, fmt.Sprintf("{%d}:i", p), "id").Result()
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, got)
		}
		return out
	}
	before := markers()
	serve := store.RedisConfig{Partitions: 16, SecretCheck: keyer(t).Check(), Chain: chainKey(t)}
	if _, err := store.OpenRedis(ctx, rdb, serve); !errors.Is(err, store.ErrUnmigrated) {
		t.Fatalf("this version on a stamp cut short: %v, want ErrUnmigrated", err)
	}
	st := openRedis(t, rdb)
	rep, err := migrate.Plan(ctx, st, inputs(t), time.Now(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got := markers(); st.Migrated() || !slices.Equal(got, before) {
		t.Fatalf("the dry run: migrated %v, markers %q; want neither changed from %q", st.Migrated(), got, before)
	}
	// The merges go to stamped and unstamped partitions alike.
	if err := migrate.Apply(ctx, st, rep, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	for p, got := range markers() {
		if got != "chain-v3/"+id {
			t.Errorf("partition %d's marker: %q, want the current layout's", p, got)
		}
	}
	if _, err := store.OpenRedis(ctx, rdb, serve); err != nil {
		t.Fatalf("this version after the stamp was finished: %v", err)
	}
}

// TestMigrateMoreSpellingsLater: a spelling supplied in a later run, of an
// identifier an earlier run merged already, is merged too, and its
// withdrawal kept: the request ids of a merge name the spellings it
// merges, so the later merge's events are not taken for replays of the
// earlier one's (their fingerprint is the request id's alone). Without
// that, the later run's withdrawals were dropped as replays and the
// canonical identifier kept answering ALLOW.
func TestMigrateMoreSpellingsLater(t *testing.T) {
	ctx := context.Background()
	st := copyEmbedded(t, store.EmbeddedConfig{Migrating: true})
	sec, k := secret(t), keyer(t)
	const timeout = 10 * time.Second
	at := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	// Three spellings of one number: the canonical one and two others,
	// each a record of its own in the legacy store.
	const spaced, canonical, later = "+44 20 7946 0123", "+442079460123", "+44 2079 460123"
	t0 := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	grant := consent.Proof{Method: consent.MethodCheckbox, Source: consent.SourceFirstParty, CapturedAt: t0, RecordedAt: t0}
	withdrawn := consent.Proof{CapturedAt: t0.Add(time.Hour), RecordedAt: t0.Add(time.Hour)}
	for _, w := range []consent.Write{
		{Key: migrate.LegacyKey(sec, canonical), Event: consent.Event{Kind: consent.EventGrant, Purposes: []string{"email_marketing"}, Proof: grant}},
		{Key: migrate.LegacyKey(sec, spaced), Event: consent.Event{Kind: consent.EventGrant, Purposes: []string{"email_marketing", "market_research", "sales_outreach"}, Proof: grant}},
		{Key: migrate.LegacyKey(sec, later), Event: consent.Event{Kind: consent.EventWithdraw, Purposes: []string{"email_marketing"}, Proof: withdrawn}},
	} {
		if _, errs, err := st.ApplyBatch(ctx, []consent.Write{w}); err != nil || errs[0] != nil {
			t.Fatalf("writing the legacy record: %v %v", err, errs)
		}
	}
	run := func(at time.Time, contacts ...string) {
		t.Helper()
		var in []migrate.Input
		for i, c := range contacts {
			in = append(in, migrate.KeyInput(sec, k, i+1, c))
		}
		rep, err := migrate.Plan(ctx, st, in, at, timeout)
		if err != nil {
			t.Fatal(err)
		}
		if err := migrate.Apply(ctx, st, rep, timeout); err != nil {
			t.Fatal(err)
		}
	}
	run(at, spaced, canonical)
	run(at.Add(time.Hour), spaced, canonical, later)

	key, err := k.Key(canonical)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := st.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := consent.NewRegistry(consent.DefaultPurposes())
	if err != nil {
		t.Fatal(err)
	}
	p, _ := reg.Lookup("email_marketing")
	if got, want := consent.Decide(&rec, p, at.Add(2*time.Hour)), (consent.Decision{Reason: consent.ReasonWithdrawn}); got != want {
		t.Errorf("the canonical identifier after the later spelling's merge: %+v, want %+v (the withdrawal under %q)", got, want, later)
	}
	if _, err := st.VerifyHistory(ctx); err != nil {
		t.Errorf("verify: %v", err)
	}
}
