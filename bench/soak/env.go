package soak

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/consentd/consentd/client"
	"github.com/consentd/consentd/internal/faultproxy"
	"github.com/consentd/consentd/internal/redisproc"
)

// Launcher starts consentd processes (cmd/consentbench runs the consentd
// binary it built).
type Launcher interface {
	// Start runs consentd with args and returns once it serves; an error if
	// it exits first.
	Start(ctx context.Context, args ...string) (Process, error)
}

// Process is a consentd the Launcher started.
type Process interface {
	Stop() error // SIGTERM, and wait until it has exited
	Kill() error // SIGKILL by PID, and wait until it has exited
}

// Health is what a sidecar's health service says.
type Health uint8

const (
	Serving    Health = iota + 1
	NotServing        // consentd answered NOT_SERVING
	Down              // no answer: the process is gone or does not answer in time
)

func (h Health) String() string {
	switch h {
	case Serving:
		return "SERVING"
	case NotServing:
		return "NOT_SERVING"
	case Down:
		return "down"
	}
	return "?"
}

// healthEvent is a change of a sidecar's health, as first polled.
type healthEvent struct {
	At    time.Time
	State Health
}

const (
	// healthPoll is how often each sidecar's health is asked: the
	// resolution of the times to NOT_SERVING and back.
	healthPoll = 50 * time.Millisecond
	// healthTimeout bounds one health call (consentd answers it from
	// memory): shorter, and a busy 2-core machine shows a serving sidecar
	// as down now and then.
	healthTimeout = time.Second
)

// sidecar is one consentd of the soak, restarted on the same address.
type sidecar struct {
	name   string
	listen string   // 127.0.0.1:PORT, the same for every run of it
	args   []string // every flag but --redis-init
	client *client.Client

	mu     sync.Mutex
	proc   Process       // nil while not running
	health []healthEvent // changes only
}

func (s *sidecar) record(at time.Time, h Health) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := len(s.health); n == 0 || s.health[n-1].State != h {
		s.health = append(s.health, healthEvent{At: at, State: h})
	}
}

// now returns the sidecar's latest polled health.
func (s *sidecar) now() Health {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.health) == 0 {
		return Down
	}
	return s.health[len(s.health)-1].State
}

func (s *sidecar) history() []healthEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.health)
}

// leftServing returns its first poll after t that was not SERVING.
func (s *sidecar) leftServing(t time.Time) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ev := range s.health {
		if ev.At.After(t) && ev.State != Serving {
			return ev.At, true
		}
	}
	return time.Time{}, false
}

// watch polls the sidecar's health until ctx is done.
func (s *sidecar) watch(ctx context.Context) {
	t := time.NewTicker(healthPoll)
	defer t.Stop()
	for {
		hctx, cancel := context.WithTimeout(ctx, healthTimeout)
		err := s.client.Health(hctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		s.record(time.Now(), classify(err))
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// classify tells NOT_SERVING (an answer) from no answer.
func classify(err error) Health {
	var rpc *client.Error
	switch {
	case err == nil:
		return Serving
	case errors.As(err, &rpc):
		return Down
	}
	return NotServing
}

// env is the soak's world: Redis, the proxy in front of it for sidecar B,
// and the two sidecars.
type env struct {
	dir      string
	redis    *redisproc.Server
	admin    *redis.Client // the operator's and the fault injector's own connection
	proxy    *faultproxy.Proxy
	sidecars []*sidecar
	launch   Launcher
	initFlag bool // start the first sidecar (and re-init after a wipe) with --redis-init

	stopWatch context.CancelFunc
	watchers  sync.WaitGroup
}

// sidecarCache is each sidecar's --cache-bytes: the load's contacts fit
// many times over.
const sidecarCache = 64 << 20

// newEnv starts Redis, the proxy and both sidecars in dir, and returns once
// both sidecars are SERVING.
func newEnv(ctx context.Context, dir string, cfg Config, launch Launcher) (_ *env, err error) {
	e := &env{dir: dir, launch: launch, initFlag: cfg.RedisInit}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	rdir := filepath.Join(dir, "redis")
	if err := os.MkdirAll(rdir, 0o700); err != nil {
		return nil, err
	}
	if e.redis, err = redisproc.Start(rdir, redisproc.Options{Config: []string{"maxmemory-policy noeviction"}}); err != nil {
		return nil, err
	}
	e.admin = redis.NewClient(&redis.Options{Addr: e.redis.Addr(), ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second, MaxRetries: -1})
	if e.proxy, err = faultproxy.New(e.redis.Addr()); err != nil {
		return nil, err
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, secret, 0o600); err != nil {
		return nil, err
	}
	common := []string{"--secret-file", secretFile, "--lease", cfg.Lease.String(),
		"--cache-bytes", strconv.Itoa(sidecarCache), "--shutdown-timeout", "2s"}
	for i, redisAddr := range []string{e.redis.Addr(), e.proxy.Addr()} {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s := &sidecar{name: string(rune('A' + i)), listen: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
		s.args = append([]string{"--redis", "redis://" + redisAddr + "/0", "--listen", s.listen}, common...)
		if s.client, err = client.New(s.listen, client.WithDialOptions(fastReconnect())); err != nil {
			return nil, err
		}
		e.sidecars = append(e.sidecars, s)
	}
	wctx, stop := context.WithCancel(context.Background())
	e.stopWatch = stop
	for _, s := range e.sidecars {
		e.watchers.Go(func() { s.watch(wctx) })
	}
	for i, s := range e.sidecars {
		if err := e.start(ctx, s, i == 0 && e.initFlag); err != nil {
			return nil, err
		}
	}
	if err := e.waitAll(ctx, Serving, time.Minute); err != nil {
		return nil, err
	}
	return e, nil
}

// start runs s, with --redis-init if init is set.
func (e *env) start(ctx context.Context, s *sidecar, init bool) error {
	args := s.args
	if init {
		args = append(slices.Clone(args), "--redis-init")
	}
	p, err := e.launch.Start(ctx, args...)
	if err != nil {
		return fmt.Errorf("sidecar %s: %w", s.name, err)
	}
	s.mu.Lock()
	s.proc = p
	s.mu.Unlock()
	return nil
}

// take detaches s's process, if any.
func (s *sidecar) take() Process {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.proc
	s.proc = nil
	return p
}

// stop ends s gracefully (kill: with SIGKILL).
func (e *env) stop(s *sidecar, kill bool) error {
	p := s.take()
	if p == nil {
		return nil
	}
	if kill {
		return p.Kill()
	}
	return p.Stop()
}

// waitAll waits until every sidecar's health is want, up to timeout, and
// returns when the last one got there.
func (e *env) waitAll(ctx context.Context, want Health, timeout time.Duration) error {
	return e.wait(ctx, timeout, func(h Health) bool { return h == want }, e.sidecars...)
}

// wait waits until ok holds for the health of every one of ss.
func (e *env) wait(ctx context.Context, timeout time.Duration, ok func(Health) bool, ss ...*sidecar) error {
	deadline := time.Now().Add(timeout)
	for {
		all := true
		var states []string
		for _, s := range ss {
			h := s.now()
			all = all && ok(h)
			states = append(states, s.name+" "+h.String())
		}
		if all {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %v: %v", timeout, states)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(healthPoll / 2):
		}
	}
}

// close stops everything newEnv started, by PID, and waits for it.
func (e *env) close() {
	for _, s := range e.sidecars {
		if p := s.take(); p != nil {
			p.Kill()
		}
	}
	if e.stopWatch != nil {
		e.stopWatch()
		e.watchers.Wait()
	}
	for _, s := range e.sidecars {
		s.client.Close()
	}
	if e.proxy != nil {
		e.proxy.Close()
	}
	if e.admin != nil {
		e.admin.Close()
	}
	if e.redis != nil {
		e.redis.Kill()
	}
}

// fastReconnect redials a restarted sidecar within a few polls; gRPC's
// default backoff (1 s, growing to 2 min) would measure itself, not
// consentd, in the times back to SERVING.
func fastReconnect() grpc.DialOption {
	return grpc.WithConnectParams(grpc.ConnectParams{
		Backoff:           backoff.Config{BaseDelay: healthPoll, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 4 * healthPoll},
		MinConnectTimeout: time.Second,
	})
}

// freePort returns a loopback port nothing listens on. A sidecar keeps its
// port across restarts, so its client reconnects by itself.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
