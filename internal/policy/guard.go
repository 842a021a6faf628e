package policy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/consentd/consentd/internal/caller"
	"github.com/consentd/consentd/internal/logthrottle"
	pb "github.com/consentd/consentd/proto/consent/v1"
)

// Guard enforces the policy of one file and reloads it. Its zero value is
// not usable: see Load.
type Guard struct {
	path     string
	purposes []string
	log      *slog.Logger
	// current is the policy in force with its callers' token buckets,
	// swapped whole so a call never sees one without the other.
	current atomic.Pointer[enforced]
	// quiet logs refusals at most once per caller, RPC and kind a while,
	// however many calls a flood brings.
	quiet *logthrottle.Throttle
	// stamp is the file's modification time and size when last read, so
	// Run reloads only on a change; only Run and Reload's callers (one
	// goroutine) touch it.
	stamp fileStamp
}

type fileStamp struct {
	mod  time.Time
	size int64
}

func statFile(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{fi.ModTime(), fi.Size()}, nil
}

// Load reads the policy file at path, with purposes the registry's names;
// errors name the file.
func Load(path string, purposes []string, log *slog.Logger) (*Guard, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	g := &Guard{path: path, purposes: purposes, log: log, quiet: logthrottle.New(logthrottle.Every)}
	p, st, err := g.read()
	if err != nil {
		return nil, err
	}
	g.current.Store(enforce(p, nil))
	g.stamp = st
	return g, nil
}

func (g *Guard) read() (*Policy, fileStamp, error) {
	st, err := statFile(g.path)
	if err != nil {
		return nil, st, err
	}
	p, err := ReadFile(g.path, g.purposes)
	return p, st, err
}

// ReadFile reads and parses the policy file at path, as Load does; errors
// name the file. consentctl uses it to show a file the way consentd reads
// it.
func ReadFile(path string, purposes []string) (*Policy, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	p, err := Parse(b, purposes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

// Policy returns the policy in force.
func (g *Guard) Policy() *Policy { return g.current.Load().policy }

// Reload reads the file again; a broken file is logged and refused, and the
// policy in force stays.
func (g *Guard) Reload() error {
	p, st, err := g.read()
	g.stamp = st
	if err != nil {
		g.log.Error("policy reload refused: keeping the previous policy", "file", g.path, "error", err)
		return err
	}
	// Only Run's goroutine reloads, so no other reload races this one.
	g.current.Store(enforce(p, g.current.Load()))
	g.log.Info("policy reloaded", "file", g.path, "callers", p.Len())
	return nil
}

// Run reloads the policy when reload receives and when the file's
// modification time or size changes (polled every interval), until ctx is
// done.
func (g *Guard) Run(ctx context.Context, interval time.Duration, reload <-chan os.Signal) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-reload:
			_ = g.Reload()
		case <-t.C:
			if st, err := statFile(g.path); err != nil || st != g.stamp {
				if err != nil && errors.Is(err, os.ErrNotExist) && g.stamp == (fileStamp{}) {
					continue // already refused: don't log every second
				}
				_ = g.Reload()
			}
		}
	}
}

// governed splits a full method name into its short name, when it is a
// method of consent.v1.
func governed(fullMethod string) (string, bool) {
	svc, rpc, ok := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/")
	if !ok {
		return "", false
	}
	for _, sd := range services() {
		if sd.ServiceName == svc {
			return rpc, true
		}
	}
	return "", false
}

// errDenied is all a refused caller learns; the details are logged. purpose
// says which purposes the call named (see names), "" for none.
func errDenied(rpc, purpose string) error {
	if purpose == "" {
		return status.Errorf(codes.PermissionDenied, "caller not entitled to %s", rpc)
	}
	return status.Errorf(codes.PermissionDenied, "caller not entitled to %s on purpose %s", rpc, purpose)
}

// The request fields that name purposes: generated getters.
type (
	onePurpose   interface{ GetPurpose() string }
	manyPurposes interface{ GetPurposes() []string }
)

// allows checks one call: rpc for caller, and the purposes msg names (nil:
// only the RPC). It logs and returns PERMISSION_DENIED when denied; never a
// contact, nor a purpose name the caller made up.
func (g *Guard) allows(ctx context.Context, rpc string, msg any) error {
	caller, _ := caller.FromContext(ctx)
	p := g.current.Load().policy
	deny := func(purposes ...string) error {
		logged, told := g.names(purposes)
		if n, ok := g.quiet.Allow("denied\x00"+caller+"\x00"+rpc, time.Now()); ok {
			attrs := []any{"caller", caller, "rpc", rpc, "purpose", logged}
			if n > 0 {
				attrs = append(attrs, "suppressed", n)
			}
			g.log.WarnContext(ctx, "permission denied", attrs...)
		}
		return errDenied(rpc, told)
	}
	if !p.AllowRPC(caller, rpc) {
		return deny(purposesOf(rpc, msg)...)
	}
	// A rectification carries every purpose's consent to the new
	// identifier and withdraws every purpose on the old: it is held to
	// every purpose, as a withdrawal of all is.
	if rpc == "Rectify" && !p.AllowAllPurposes(caller) {
		return deny(Any)
	}
	// kind is the RPC a message would be sent to alone: a batch's writes
	// are held to their purposes as if each were.
	var purposes func(kind string, msg any) error
	purposes = func(kind string, msg any) error {
		switch m := msg.(type) {
		case onePurpose:
			if !p.AllowPurpose(caller, m.GetPurpose()) {
				return deny(m.GetPurpose())
			}
		case manyPurposes:
			ps := m.GetPurposes()
			if len(ps) == 0 && kind == "Withdraw" {
				// No purposes withdraws them all.
				if !p.AllowAllPurposes(caller) {
					return deny(Any)
				}
			}
			for _, pu := range ps {
				if !p.AllowPurpose(caller, pu) {
					return deny(pu)
				}
			}
		case batchWrites:
			for _, w := range m.GetWrites() {
				var err error
				switch {
				case w.GetGrant() != nil:
					err = purposes("Grant", w.GetGrant())
				case w.GetWithdraw() != nil:
					err = purposes("Withdraw", w.GetWithdraw())
				}
				if err != nil {
					return err
				}
			}
		}
		return nil
	}
	return purposes(rpc, msg)
}

// names says which purposes a call names, for the log and for the refusal
// (quoted there): a registered purpose, or Any, by its name; any other
// string by its length only, since a name the caller made up is a request
// field like any other and may hold anything, a contact included.
func (g *Guard) names(purposes []string) (logged, told string) {
	var l, t []string
	for _, pu := range purposes {
		if pu == Any || slices.Contains(g.purposes, pu) {
			l, t = append(l, pu), append(t, strconv.Quote(pu))
			continue
		}
		d := fmt.Sprintf("(unregistered, %d bytes)", len(pu))
		l, t = append(l, d), append(t, d)
	}
	return strings.Join(l, ","), strings.Join(t, ",")
}

// batchWrites is WriteBatch's request.
type batchWrites interface{ GetWrites() []*pb.BatchWrite }

// purposesOf lists the purposes msg asks for, for the log: none when it
// names none, Any for a withdrawal of all.
func purposesOf(rpc string, msg any) []string {
	if rpc == "Rectify" {
		return []string{Any}
	}
	switch m := msg.(type) {
	case onePurpose:
		if m.GetPurpose() == "" {
			return nil
		}
		return []string{m.GetPurpose()}
	case manyPurposes:
		if len(m.GetPurposes()) == 0 && rpc == "Withdraw" {
			return []string{Any}
		}
		return m.GetPurposes()
	}
	return nil
}

// UnaryInterceptor checks unary calls, entitlement then rate; chain it
// after identity's.
func (g *Guard) UnaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if rpc, ok := governed(info.FullMethod); ok {
			if err := g.allows(ctx, rpc, req); err != nil {
				return nil, err
			}
			if err := g.admit(ctx, rpc, req); err != nil {
				return nil, err
			}
		}
		return h(ctx, req)
	}
}

// StreamInterceptor checks streaming calls: the RPC and the caller's rate
// at once, then the purpose of the first message the handler receives, and
// paces the contacts of every message to the caller's rate.
func (g *Guard) StreamInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		rpc, ok := governed(info.FullMethod)
		if !ok {
			return h(srv, ss)
		}
		if err := g.allows(ss.Context(), rpc, nil); err != nil {
			return err
		}
		if err := g.admit(ss.Context(), rpc, nil); err != nil {
			return err
		}
		return h(srv, &checkedStream{ServerStream: ss, g: g, rpc: rpc})
	}
}

// checkedStream checks the purpose of a stream's first message before the
// handler sees it, and paces every message's contacts.
type checkedStream struct {
	grpc.ServerStream
	g       *Guard
	rpc     string
	checked bool
}

func (s *checkedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if !s.checked {
		s.checked = true
		if err := s.g.allows(s.Context(), s.rpc, m); err != nil {
			return err
		}
	}
	if c, ok := m.(manyContacts); ok {
		return s.g.pace(s.Context(), s.rpc, len(c.GetContacts()))
	}
	return nil
}
