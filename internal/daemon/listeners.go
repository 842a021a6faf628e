package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"

	"github.com/consentd/consentd/server"
)

// parts are what the listeners serve, wired by serve.
type parts struct {
	grpc    *grpc.Server
	api     *server.Server
	metrics *daemonMetrics // nil without --metrics-listen
	health  *health.Server
	log     *slog.Logger
}

// listeners is consentd's table of listeners, in the order they start: a
// listener is on when its flag gives it an address. Adding one is adding
// an entry.
//
// On SIGTERM every listener but the last ones drains at once, in-flight
// calls finishing within --shutdown-timeout; the last ones (the health
// listener) are closed after that, so that probes see NOT_SERVING while the
// calls finish instead of a refused connection.
func listeners(c Config, p parts) []listener {
	return []listener{
		{flag: "listen", attr: "addr", addr: c.Listen, required: true, start: func(addr string) (serving, net.Addr, error) {
			lis, err := listen(addr)
			if err != nil {
				return nil, nil, err
			}
			return grpcServer{srv: p.grpc, lis: lis, log: p.log}, lis.Addr(), nil
		}},
		{flag: "http", attr: "http", addr: c.HTTP, hostPort: true, start: func(addr string) (serving, net.Addr, error) {
			return startWeb(addr, p.api.HTTPHandler(p.log), p.log)
		}},
		{flag: "metrics-listen", attr: "metrics", addr: c.MetricsListen, hostPort: true, start: func(addr string) (serving, net.Addr, error) {
			return startWeb(addr, p.metrics.handler(p.log), p.log)
		}},
		{flag: "health-listen", attr: "health", addr: c.HealthListen, hostPort: true, last: true, start: func(addr string) (serving, net.Addr, error) {
			return startHealth(addr, p.health)
		}},
	}
}

// A listener is one address consentd serves on.
type listener struct {
	flag string // the flag that gives its address: errors name it
	attr string // its address's key in the "consentd serving" line
	addr string // "" is off
	// required: the listener cannot be off (consentd with no gRPC
	// listener would say it serves and answer nothing).
	required bool
	// hostPort: Config.Check refuses an address that is not host:port.
	// (The main listener also takes unix:PATH; listening checks it.)
	hostPort bool
	// start listens on addr; serving begins with serve.
	start func(addr string) (serving, net.Addr, error)
	// last listeners are closed once all the others have drained.
	last bool
}

// serving is a listener's server.
type serving interface {
	// serve serves until the server is stopped, and returns why it ended.
	serve() error
	// shutdown stops accepting and lets in-flight calls finish until grace
	// is done, then cuts them; it returns once they have all returned.
	shutdown(grace context.Context)
	// close stops at once, for the paths that end consentd on an error and
	// for the last listeners; it returns once every call has returned.
	close()
}

// listenerSet is the listeners serve started: it owns their serving
// goroutines, which have all ended once shutdown or close returns.
type listenerSet struct {
	running []*running
	// failed receives what ended a listener's serving: before shutdown or
	// close, a failure that ends consentd. It has room for every listener,
	// so no serving goroutine waits on it.
	failed chan error
}

type running struct {
	listener
	srv  serving
	at   net.Addr
	done chan struct{} // closed when serve has returned
}

// startListeners starts every listener of ls that has an address. If one
// cannot listen, those started are closed and the error names its flag.
func startListeners(ls []listener) (*listenerSet, error) {
	set := &listenerSet{failed: make(chan error, len(ls))}
	for _, l := range ls {
		if l.addr == "" {
			continue
		}
		srv, at, err := l.start(l.addr)
		if err != nil {
			set.close()
			return nil, fmt.Errorf("--%s: %w", l.flag, err)
		}
		r := &running{listener: l, srv: srv, at: at, done: make(chan struct{})}
		set.running = append(set.running, r)
		go func() {
			defer close(r.done)
			set.failed <- fmt.Errorf("serve --%s: %w", r.flag, r.srv.serve())
		}()
	}
	return set, nil
}

// attrs are the listeners' addresses, for the "consentd serving" line.
func (s *listenerSet) attrs() []any {
	var attrs []any
	for _, r := range s.running {
		attrs = append(attrs, r.attr, r.at.String())
	}
	return attrs
}

// shutdown drains every listener but the last ones at once, for at most
// timeout, then closes the last ones.
func (s *listenerSet) shutdown(timeout time.Duration) {
	grace, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, r := range s.running {
		if !r.last {
			wg.Go(func() { r.srv.shutdown(grace); <-r.done })
		}
	}
	wg.Wait()
	s.closeIf(func(r *running) bool { return r.last })
}

// close stops every listener at once, the last ones last.
func (s *listenerSet) close() {
	s.closeIf(func(r *running) bool { return !r.last })
	s.closeIf(func(r *running) bool { return r.last })
}

func (s *listenerSet) closeIf(which func(*running) bool) {
	for _, r := range s.running {
		if which(r) {
			r.srv.close()
			<-r.done
		}
	}
}

// grpcServer is the main listener: the gRPC API.
type grpcServer struct {
	srv *grpc.Server
	lis net.Listener
	log *slog.Logger
}

func (g grpcServer) serve() error { return g.srv.Serve(g.lis) }

func (g grpcServer) shutdown(grace context.Context) {
	stopped := make(chan struct{})
	go func() { g.srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-grace.Done():
		g.log.Warn("shutdown timeout: cancelling in-flight calls")
		g.srv.Stop()
		<-stopped
	}
}

func (g grpcServer) close() { g.srv.Stop() }

// listen opens addr; "unix:PATH" is a Unix socket, whose stale file from a
// crashed run is removed only when nothing answers on it.
func listen(addr string) (net.Listener, error) {
	path, ok := strings.CutPrefix(addr, "unix:")
	if !ok {
		return net.Listen("tcp", addr)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		if conn, err := net.DialTimeout("unix", path, time.Second); err == nil {
			conn.Close()
			return nil, fmt.Errorf("listen %s: another process is serving there", addr)
		}
		if err := os.Remove(path); err != nil {
			return nil, err
		}
	}
	return net.Listen("unix", path)
}
