package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/consentd/consentd/internal/chain"
	"github.com/consentd/consentd/internal/contactkey"
	"github.com/consentd/consentd/internal/daemon"
	"github.com/consentd/consentd/internal/migrate"
	"github.com/consentd/consentd/store"
)

// migrateStore is a store opened to be migrated, with what closes it.
type migrateStore interface {
	migrate.Store
	Close() error
}

func setupMigrate(fs *flag.FlagSet) runner {
	c := daemon.DefaultConfig()
	c.DataDir = ""
	fs.StringVar(&c.DataDir, "data-dir", "", "")
	fs.StringVar(&c.SecretFile, "secret-file", "", "")
	fs.StringVar(&c.RedisURL, "redis", "", "")
	fs.StringVar(&c.RedisSentinel, "redis-sentinel", "", "")
	fs.StringVar(&c.RedisCluster, "redis-cluster", "", "")
	fs.StringVar(&c.RedisPasswordFile, "redis-password-file", "", "")
	fs.UintVar(&c.Partitions, "partitions", c.Partitions, "")
	region := fs.String("default-region", "", "")
	contacts := fs.String("contacts", "", "")
	column := fs.String("column", "", "")
	apply := fs.Bool("apply", false, "")
	return func(ctx context.Context, cl *call, _ []string) (int, error) {
		if *contacts == "" {
			return exitError, errors.New("--contacts FILE is required: the identifiers as your systems wrote them, one per line (or a CSV column, --column NAME)")
		}
		redis := c.RedisURL != "" || c.RedisSentinel != "" || c.RedisCluster != ""
		if redis == (c.DataDir != "") {
			return exitError, errors.New("give the store consentd uses: --data-dir DIR for the embedded store, or its --redis, --redis-sentinel or --redis-cluster flags")
		}
		if !redis && c.SecretFile == "" {
			c.SecretFile = filepath.Join(c.DataDir, "secret")
		}
		if c.SecretFile == "" {
			return exitError, errors.New("with Redis, --secret-file is required: the secret every sidecar keys contacts with")
		}
		if c.RedisPasswordFile == "" {
			c.RedisPassword = daemon.Password(cl.env("CONSENTD_REDIS_PASSWORD"))
		}
		secret, err := os.ReadFile(c.SecretFile)
		if err != nil {
			return exitError, fmt.Errorf("--secret-file: %w", err)
		}
		opts := []contactkey.Option{contactkey.WithScheme(contactkey.SchemeHMACSHA256)}
		if *region != "" {
			opts = append(opts, contactkey.WithDefaultRegion(*region))
		}
		keys, err := contactkey.New(secret, opts...)
		if err != nil {
			return exitError, err
		}
		// Keyed first, before the store is opened: a file that cannot be
		// read changes nothing.
		f, err := os.Open(*contacts)
		if err != nil {
			return exitError, fmt.Errorf("--contacts: %w", err)
		}
		var inputs []migrate.Input
		err = migrate.ReadContacts(f, *column, func(line int, contact string) error {
			inputs = append(inputs, migrate.KeyInput(secret, keys, line, contact))
			return nil
		})
		f.Close()
		if err != nil {
			return exitError, fmt.Errorf("--contacts %s: %w", *contacts, err)
		}
		st, err := openMigrateStore(ctx, c, secret, keys, cl.timeout)
		if err != nil {
			return exitError, err
		}
		defer st.Close()
		rep, err := migrate.Plan(ctx, st, inputs, time.Now().UTC().Truncate(time.Millisecond), cl.timeout)
		if err != nil {
			return exitError, err
		}
		if *apply {
			if err := migrate.Apply(ctx, st, rep, cl.timeout); err != nil {
				return exitError, err
			}
		}
		if cl.out.json {
			return exitOK, cl.out.jsonValue(rep)
		}
		return exitOK, printMigration(cl.out.w, rep)
	}
}

func openMigrateStore(ctx context.Context, c daemon.Config, secret []byte, keys *contactkey.Keyer, timeout time.Duration) (migrateStore, error) {
	ch, err := chain.NewKey(secret)
	if err != nil {
		return nil, err
	}
	scheme := string(keys.Scheme())
	if c.RedisURL == "" && c.RedisSentinel == "" && c.RedisCluster == "" {
		st, err := store.OpenEmbeddedConfig(c.DataDir, ch, store.EmbeddedConfig{KeyScheme: scheme, Migrating: true})
		if err != nil {
			return nil, fmt.Errorf("--data-dir %s: %w", c.DataDir, err)
		}
		return st, nil
	}
	rdb, err := daemon.RedisClient(c)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	st, err := store.OpenRedis(ctx, rdb, store.RedisConfig{Partitions: uint32(c.Partitions), SecretCheck: keys.Check(), Chain: ch,
		KeyScheme: scheme, Migrating: true})
	if err != nil {
		rdb.Close()
		return nil, err
	}
	return redisMigrateStore{st, rdb}, nil
}

// redisMigrateStore closes the client with the store, which does not own it.
type redisMigrateStore struct {
	*store.Redis
	client io.Closer
}

func (s redisMigrateStore) Close() error { return errors.Join(s.Redis.Close(), s.client.Close()) }

// printMigration writes the report for an operator: lines by number and
// identifiers by kind, never an identifier.
func printMigration(w io.Writer, rep *migrate.Report) error {
	var b strings.Builder
	if rep.Applied {
		b.WriteString("applied\n")
	} else {
		b.WriteString("dry run: nothing written; run again with --apply to write\n")
	}
	merged, done := 0, 0
	for _, g := range rep.Merged {
		if g.Done {
			done++
			fmt.Fprintf(&b, "already merged: %s (%s)\n", lineList(g.Lines), g.Kind)
			continue
		}
		merged++
		verb := "would merge"
		if rep.Applied {
			verb = "merged"
		}
		what := fmt.Sprintf("%s %s into the canonical identifier", verb, plural(uint64(g.Spellings), "other spelling"))
		switch {
		case g.Erased:
			what += "; erased at migration time (erased under one spelling)"
		case len(g.Withdrawn) > 0:
			what += "; withdrawn at migration time: " + strings.Join(g.Withdrawn, ", ")
		}
		fmt.Fprintf(&b, "%s (%s): %s\n", lineList(g.Lines), g.Kind, what)
	}
	for _, u := range rep.Unparsed {
		fmt.Fprintf(&b, "not parsed: line %d: %s\n", u.Line, u.Problem)
	}
	for _, l := range rep.Lost {
		article := "a"
		if l.To == "erasure" {
			article = "an"
		}
		fmt.Fprintf(&b, "ask again: %s, %s: its yes lost to %s %s under another spelling\n", lineList(l.Lines), l.Purpose, article, l.To)
	}
	layout := "the store has the current layout"
	switch {
	case rep.Applied && !rep.Migrated:
		layout = "stamped the current layout: this version of consentd serves the store"
	case !rep.Migrated:
		layout = "the current layout would be stamped last"
	}
	fmt.Fprintf(&b, "%s: %d to merge, %d merged before; %d not parsed; %s lost; %s; %s in the store, %d reached by no line; %s\n",
		plural(uint64(rep.Lines), "line"), merged, done, len(rep.Unparsed), plural(uint64(len(rep.Lost)), "yes"),
		plural(uint64(rep.Writes), "write"), plural(uint64(rep.Records), "record"), rep.Unreached, layout)
	_, err := io.WriteString(w, b.String())
	return err
}

// lineList names input lines: "line 3", "lines 1,2".
func lineList(lines []int) string {
	s := make([]string, len(lines))
	for i, n := range lines {
		s[i] = fmt.Sprint(n)
	}
	if len(s) == 1 {
		return "line " + s[0]
	}
	return "lines " + strings.Join(s, ",")
}
