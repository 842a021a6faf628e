// Package redistest runs real redis-server processes for tests: standalone
// servers and small Redis Clusters on free loopback ports, each in its own
// temporary directory, stopped by PID in t.Cleanup even when the test fails.
// The processes themselves are internal/redisproc's; this package ties them
// to a test.
//
// A missing redis-server binary fails the test; it never skips.
package redistest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/consentd/consentd/internal/redisproc"
)

// Server is one redis-server process: a redisproc.Server (Port, Dir, Addr,
// PID, Signal, ...) whose failures fail the test.
type Server struct {
	*redisproc.Server
	admin *redis.Client // for the helper's own commands
}

// Start runs a redis-server until the end of the test. It returns once the
// server answers PING. The server is killed (SIGKILL by PID) and reaped in
// t.Cleanup, whether or not the test failed.
func Start(t testing.TB, o redisproc.Options) *Server {
	t.Helper()
	dir := t.TempDir()
	rs, err := redisproc.Start(dir, o)
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	s := &Server{Server: rs, admin: redis.NewClient(&redis.Options{Addr: rs.Addr()})}
	// Registered after t.TempDir, so it runs before the directory is removed.
	t.Cleanup(func() {
		if err := s.Server.Kill(); err != nil {
			t.Errorf("redistest: cleanup of %s: %v", s.Addr(), err)
		}
		s.admin.Close()
	})
	return s
}

// Kill sends SIGKILL to the server and waits until it has exited.
func (s *Server) Kill(t testing.TB) {
	t.Helper()
	if err := s.Server.Kill(); err != nil {
		t.Fatalf("redistest: kill %s: %v", s.Addr(), err)
	}
}

// Stop sends SIGTERM to the server (a graceful shutdown: the AOF is flushed,
// and an RDB saved if the config asks for one) and waits until it has exited.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	if err := s.Server.Stop(); err != nil {
		t.Fatalf("redistest: %v", err)
	}
}

// Restart starts the server again after Kill or Stop, with the same port,
// directory and config. It returns once the server answers PING and has
// finished loading its data.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if err := s.Server.Restart(); err != nil {
		t.Fatalf("redistest: %v", err)
	}
}

// Reconfigure adds redis.conf directives ("name value" lines) to the
// stopped server (after Stop or Kill), for the next Restart: a Redis that
// comes back with other settings, as after a restart with the wrong
// redis.conf. Later lines override earlier ones.
func (s *Server) Reconfigure(t testing.TB, lines ...string) {
	t.Helper()
	if err := s.Server.Reconfigure(lines...); err != nil {
		t.Fatalf("redistest: %v", err)
	}
}

// dataFiles are what a server persists its keyspace in, under Dir.
var dataFiles = []string{"appendonlydir", "dump.rdb"}

// SaveData copies the data files of the stopped server (after Stop or
// Kill) to a new directory and returns it, for LoadData: an operator's
// backup.
func (s *Server) SaveData(t testing.TB) string {
	t.Helper()
	s.stopped(t, "SaveData")
	to := t.TempDir()
	for _, name := range dataFiles {
		if err := copyTree(filepath.Join(s.Dir, name), filepath.Join(to, name)); err != nil {
			t.Fatalf("redistest: SaveData: %v", err)
		}
	}
	return to
}

// LoadData replaces the data files of the stopped server with those SaveData
// saved in from, or with none when from is "": the next Restart serves that
// copy, or an empty keyspace (a server replaced by a new one at the same
// address).
func (s *Server) LoadData(t testing.TB, from string) {
	t.Helper()
	s.stopped(t, "LoadData")
	for _, name := range dataFiles {
		if err := os.RemoveAll(filepath.Join(s.Dir, name)); err != nil {
			t.Fatalf("redistest: LoadData: %v", err)
		}
		if from == "" {
			continue
		}
		if err := copyTree(filepath.Join(from, name), filepath.Join(s.Dir, name)); err != nil {
			t.Fatalf("redistest: LoadData: %v", err)
		}
	}
}

func (s *Server) stopped(t testing.TB, what string) {
	t.Helper()
	if pid := s.PID(); pid != 0 {
		t.Fatalf("redistest: %s of %s while it is running (pid %d)", what, s.Addr(), pid)
	}
}

// copyTree copies a file, or a directory of files, from to; a from that does
// not exist copies nothing.
func copyTree(from, to string) error {
	info, err := os.Stat(from)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !info.IsDir() {
		data, err := os.ReadFile(from)
		if err != nil {
			return err
		}
		return os.WriteFile(to, data, 0o600)
	}
	if err := os.MkdirAll(to, 0o700); err != nil {
		return err
	}
	entries, err := os.ReadDir(from)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := copyTree(filepath.Join(from, e.Name()), filepath.Join(to, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// Client returns a client for the server, closed in t.Cleanup.
func (s *Server) Client(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr()})
	t.Cleanup(func() { c.Close() })
	return c
}

// opCtx returns a context for one of the helper's own commands.
func opCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 10*time.Second)
}
