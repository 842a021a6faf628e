// Package testserver runs a real consentd stack in a test: the embedded store
// in a temporary directory, the cache, the gRPC server over bufconn and its
// unsubscribe HTTP handler, with everything stopped in t.Cleanup. Tests talk
// to it through real clients.
package testserver

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/test/bufconn"

	"github.com/consentd/consentd/cache"
	"github.com/consentd/consentd/consent"
	"github.com/consentd/consentd/internal/chain"
	"github.com/consentd/consentd/internal/consistencytoken"
	"github.com/consentd/consentd/internal/contactkey"
	"github.com/consentd/consentd/internal/unsubscribe"
	"github.com/consentd/consentd/server"
	"github.com/consentd/consentd/store"
)

// Env is a running stack.
type Env struct {
	Conn  *grpc.ClientConn
	Dir   string // the data directory
	Store *store.Embedded
	Cache *cache.Cache
	Keys  *contactkey.Keyer
	Logs  *SyncBuffer // everything the server logged, at debug level
	Dial  func(context.Context, string) (net.Conn, error)
	// HTTP is the server's one-click unsubscribe handler, logging to Logs.
	HTTP http.Handler
	// Server is the gRPC services' implementation, for what only it can
	// tell (AudienceHeld).
	Server *server.Server
}

// Options adjusts the stack.
type Options struct {
	CacheBytes int64            // default 16 MiB; negative disables the cache
	Now        func() time.Time // default time.Now
	// Fault, when set, runs around every unary call after consentd's own
	// interceptors: tests use it to fail calls the way a network would.
	Fault grpc.UnaryServerInterceptor
	// Audience bounds FilterAudience streams; zero fields take their
	// defaults.
	Audience server.AudienceLimits
	// Store, when set, stands between the server and the real store:
	// tests use it to fail one store call of a request that makes several,
	// the way an outage would.
	Store func(server.Store) server.Store
}

// Start runs a stack for the duration of the test.
func Start(t testing.TB, o Options) *Env {
	t.Helper()
	dir := t.TempDir()
	secret, err := contactkey.LoadOrCreateSecret(dir + "/secret")
	if err != nil {
		t.Fatal(err)
	}
	keys, err := contactkey.New(secret)
	if err != nil {
		t.Fatal(err)
	}
	history, err := chain.NewKey(secret)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.OpenEmbedded(dir, history)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	size := o.CacheBytes
	switch {
	case size == 0:
		size = 16 << 20
	case size < 0:
		size = 0
	}
	c, err := cache.New(st, cache.Config{MaxBytes: size, Partitions: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	st.OnChange(c.Invalidate)
	purposes, err := consent.NewRegistry(consent.DefaultPurposes())
	if err != nil {
		t.Fatal(err)
	}
	logs := &SyncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	lis := bufconn.Listen(1 << 20)
	calls := server.NewCallLog(log)
	opts := append(server.DecodeOptions(calls), server.ServerOptions(calls)...)
	if o.Fault != nil {
		opts = append(opts, grpc.ChainUnaryInterceptor(o.Fault))
	}
	srv := grpc.NewServer(opts...)
	unsub, err := unsubscribe.NewSigner(secret)
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := consistencytoken.NewIssuer(secret, st.StoreID())
	if err != nil {
		t.Fatal(err)
	}
	var store server.Store = st
	if o.Store != nil {
		store = o.Store(st)
	}
	api := server.New(server.Config{Keys: keys, Records: c, Store: store, Purposes: purposes, ConsistencyTokens: issuer,
		Unsubscribe: unsub, Now: o.Now, Audience: o.Audience})
	api.Register(srv)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	served := make(chan struct{})
	go func() { srv.Serve(lis); close(served) }()
	dial := func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(dial), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	// Cleanups run last-in first-out: the connection closes, then the server
	// stops, then the cache and the store.
	t.Cleanup(func() { srv.Stop(); <-served })
	t.Cleanup(func() { conn.Close() })
	return &Env{Conn: conn, Dir: dir, Store: st, Cache: c, Keys: keys, Logs: logs, Dial: dial, HTTP: api.HTTPHandler(log), Server: api}
}

// SyncBuffer is a bytes.Buffer safe for concurrent writers.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
