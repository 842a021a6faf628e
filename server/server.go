// Package server is the gRPC boundary of consentd, and the HTTP endpoint of
// its one-click unsubscribe links. Handlers are thin: parse and validate the
// request into consent types, call the cache or the store, map errors to a
// status with toStatus, respond. Logging and panic recovery are interceptors
// (for HTTP, one wrapper). The package sees stores and caches only through the small
// interfaces below, defined here where they are used.
package server

import (
	"context"
	"time"

	"google.golang.org/grpc"

	"github.com/consentd/consentd/consent"
	"github.com/consentd/consentd/internal/unsubscribe"
	pb "github.com/consentd/consentd/proto/consent/v1"
)

// Keyer turns a contact into its pseudonymous key, refusing malformed ones.
type Keyer interface {
	Key(contact string) (consent.Key, error)
	// Identify is Key, and the kind of identifier contact is: links name
	// identifiers by key and kind.
	Identify(contact string) (consent.Key, consent.IDKind, error)
}

// Records reads contacts' records as fresh as asked (normally a cache).
type Records interface {
	Get(ctx context.Context, key consent.Key, c consent.Consistency) (*consent.Record, error)
	// GetMany is Get for many keys (out has their length), in one store
	// round trip for whatever is not cached.
	GetMany(ctx context.Context, keys []consent.Key, c consent.Consistency, out []*consent.Record) error
}

// Store applies writes, pages through history and verifies it.
type Store interface {
	Apply(ctx context.Context, w consent.Write) (consent.ConsistencyToken, error)
	Events(ctx context.Context, key consent.Key, after consent.ConsistencyToken, limit int) ([]consent.Event, bool, error)
	VerifyHistory(ctx context.Context) ([]consent.PartitionHistory, error)
	// ApplyBatch applies writes in order, each with its own outcome; err is
	// for the batch as a whole.
	ApplyBatch(ctx context.Context, ws []consent.Write) ([]consent.ConsistencyToken, []error, error)
}

// ConsistencyTokens issues the consistency tokens answers carry and
// recognises the ones requests bring back (internal/consistencytoken), so
// that only tokens this store issued are read as points in its history.
// Issue runs on Check's hot path: it must not allocate.
type ConsistencyTokens interface {
	// Issue returns t as an answer carries it (tagged); zero stays zero.
	Issue(t consent.ConsistencyToken) consent.ConsistencyToken
	// Issued reports whether t, as a request brought it, is one Issue
	// returned.
	Issued(t consent.ConsistencyToken) bool
}

// Decisions counts the decisions Check, BatchCheck and FilterAudience
// answer (metrics). Decided runs on Check's hot path: it must cost next to
// nothing (no allocation, no lookup of labels) and be safe for concurrent
// use. purpose is a registry name; n is how many decisions had reason r.
type Decisions interface {
	Decided(purpose string, r consent.Reason, n uint64)
}

type noDecisions struct{}

func (noDecisions) Decided(string, consent.Reason, uint64) {}

// Config wires a Server. Every field but Now, UnsubscribeTTL and Decisions
// is required. Logging lives in the interceptors (ServerOptions) and in
// HTTPHandler's wrapper, not in handlers.
type Config struct {
	Keys     Keyer
	Records  Records
	Store    Store
	Purposes *consent.Registry
	// ConsistencyTokens tags the tokens answers carry and refuses those
	// this store did not issue.
	ConsistencyTokens ConsistencyTokens
	// Unsubscribe signs and checks one-click unsubscribe tokens.
	Unsubscribe *unsubscribe.Signer
	// UnsubscribeTTL is how long a minted token stays valid; defaults to
	// unsubscribe.DefaultTTL.
	UnsubscribeTTL time.Duration
	Now            func() time.Time // defaults to time.Now
	// Decisions, when set, counts decisions by purpose and reason.
	Decisions Decisions
	// Audience bounds what FilterAudience streams hold; zero fields take
	// their defaults.
	Audience AudienceLimits
}

// Server implements consent.v1's CheckService and ConsentService, and the
// HTTP side of one-click unsubscribe (HTTPHandler).
type Server struct {
	cfg      Config
	audience *audienceBudget
}

// New returns a Server for cfg.
func New(cfg Config) *Server {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.UnsubscribeTTL <= 0 {
		cfg.UnsubscribeTTL = unsubscribe.DefaultTTL
	}
	if cfg.Decisions == nil {
		cfg.Decisions = noDecisions{}
	}
	return &Server{cfg: cfg, audience: newAudienceBudget(cfg.Audience)}
}

// Register adds both services to r.
func (s *Server) Register(r grpc.ServiceRegistrar) {
	pb.RegisterCheckServiceServer(r, &checkService{Server: s})
	pb.RegisterConsentServiceServer(r, &consentService{Server: s})
}

// ServerOptions returns the interceptors every consentd server should use,
// logging to l, the server's call log (the one its DecodeOptions use). The
// transport's limits (keepalive, windows, message size) are the daemon's,
// set by flags.
func ServerOptions(l *CallLog) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(unaryRecover(l), unaryLog(l)),
		grpc.ChainStreamInterceptor(streamRecover(l), streamLog(l)),
	}
}
