package faultproxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/consentd/consentd/internal/redisproc"
	"github.com/consentd/consentd/internal/redistest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// setup starts a redis-server and a proxy in front of it, and returns a
// client through the proxy that never retries, so every fault shows.
func setup(t *testing.T) (*redistest.Server, *Proxy, *redis.Client) {
	t.Helper()
	srv := redistest.Start(t, redisproc.Options{})
	p := Start(t, srv.Addr())
	rdb := redis.NewClient(&redis.Options{
		Addr:         p.Addr(),
		MaxRetries:   -1,
		DialTimeout:  time.Second,
		ReadTimeout:  2 * time.Second,
		WriteTimeout: 2 * time.Second,
		PoolSize:     1,
	})
	t.Cleanup(func() { rdb.Close() })
	return srv, p, rdb
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestForward(t *testing.T) {
	_, p, rdb := setup(t)
	ctx := context.Background()
	if !strings.HasPrefix(p.Addr(), "127.0.0.1:") {
		t.Errorf("Addr() = %q", p.Addr())
	}
	if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if got, err := rdb.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("GET = %q, %v", got, err)
	}
	// A large value crosses the proxy's buffer size both ways.
	big := strings.Repeat("x", 1<<20)
	if err := rdb.Set(ctx, "big", big, 0).Err(); err != nil {
		t.Fatal(err)
	}
	if got, err := rdb.Get(ctx, "big").Result(); err != nil || got != big {
		t.Fatalf("GET big: len %d, %v", len(got), err)
	}
	if got := p.Conns(); got != 1 {
		t.Errorf("Conns() = %d, want 1", got)
	}
	rdb.Close()
	waitFor(t, "Conns() == 0 after the client closed", func() bool { return p.Conns() == 0 })
}

func TestCut(t *testing.T) {
	srv, p, rdb := setup(t)
	ctx := context.Background()

	// A plain connection sees the cut as EOF.
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	io.WriteString(c, "PING\r\n")
	if line, err := r.ReadString('\n'); err != nil || line != "+PONG\r\n" {
		t.Fatalf("PING through the proxy: %q, %v", line, err)
	}
	waitFor(t, "Conns() == 1", func() bool { return p.Conns() == 1 })
	p.Cut()
	if got := p.Conns(); got != 0 {
		t.Errorf("Conns() after Cut = %d, want 0", got)
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := r.ReadByte(); !errors.Is(err, io.EOF) {
		t.Errorf("read after Cut: %v, want EOF", err)
	}

	// A command in flight during the cut fails once; the client then
	// reconnects through the proxy.
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- rdb.BLPop(ctx, 10*time.Second, "empty").Err() }()
	direct := srv.Client(t)
	waitFor(t, "BLPOP to block", func() bool {
		info, _ := direct.Info(ctx, "clients").Result()
		return strings.Contains(info, "blocked_clients:1")
	})
	p.Cut()
	select {
	case err := <-errc:
		if err == nil || errors.Is(err, redis.Nil) {
			t.Fatalf("BLPOP across a Cut: %v, want a connection error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("BLPOP still blocked 5 s after Cut")
	}
	if err := rdb.Set(ctx, "k", "after-cut", 0).Err(); err != nil {
		t.Fatalf("SET after Cut: %v", err)
	}
	if got, err := rdb.Get(ctx, "k").Result(); err != nil || got != "after-cut" {
		t.Fatalf("GET after Cut = %q, %v", got, err)
	}

	// An idle pooled connection that was cut costs at most one failure.
	p.Cut()
	fails := 0
	for range 3 {
		if err := rdb.Ping(ctx).Err(); err != nil {
			fails++
		}
	}
	if fails > 1 {
		t.Errorf("%d of 3 PINGs after cutting an idle connection failed, want at most 1", fails)
	}
}

func TestRefuse(t *testing.T) {
	_, p, rdb := setup(t)
	ctx := context.Background()
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	p.Refuse()
	if got := p.Conns(); got != 0 {
		t.Errorf("Conns() after Refuse = %d, want 0", got)
	}
	for i := range 3 {
		if err := rdb.Ping(ctx).Err(); err == nil {
			t.Fatalf("PING %d succeeded while refusing", i)
		}
	}
	// New connections are accepted, then closed at once.
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Errorf("read on a refused connection: %v, want it closed", err)
	}
	c.Close()
	if got := p.Conns(); got != 0 {
		t.Errorf("Conns() while refusing = %d, want 0", got)
	}
	p.Resume()
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING after Resume: %v", err)
	}
}

func TestStall(t *testing.T) {
	srv, p, _ := setup(t)
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{
		Addr:         p.Addr(),
		MaxRetries:   -1,
		DialTimeout:  time.Second,
		ReadTimeout:  200 * time.Millisecond,
		WriteTimeout: 200 * time.Millisecond,
		PoolSize:     1,
	})
	defer rdb.Close()
	if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}

	p.Stall()
	start := time.Now()
	err := rdb.Set(ctx, "held", "late", 0).Err()
	if !isTimeout(err) {
		t.Fatalf("SET while stalled: %v, want a timeout", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("SET while stalled took %v to time out", d)
	}
	// The stalled SET has not reached the server.
	direct := srv.Client(t)
	if n, err := direct.Exists(ctx, "held").Result(); err != nil || n != 0 {
		t.Errorf("EXISTS held directly = %d, %v; want 0 while stalled", n, err)
	}
	// New connections are stalled too, but stay open.
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "PING\r\n")
	c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if _, err := c.Read(make([]byte, 1)); !isTimeout(err) {
		t.Errorf("read on a new stalled connection: %v, want a timeout", err)
	}
	if got := p.Conns(); got < 1 {
		t.Errorf("Conns() while stalled = %d, want the connections kept open", got)
	}

	p.Resume()
	// Held bytes are delivered now, like a healed network: the held PING is
	// answered, and the SET that timed out on the client is applied late.
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || line != "+PONG\r\n" {
		t.Errorf("held PING after Resume: %q, %v", line, err)
	}
	waitFor(t, "the held SET to be applied", func() bool {
		got, _ := direct.Get(ctx, "held").Result()
		return got == "late"
	})
	if err := rdb.Set(ctx, "k", "resumed", 0).Err(); err != nil {
		t.Fatalf("SET after Resume: %v", err)
	}
	if got, err := rdb.Get(ctx, "k").Result(); err != nil || got != "resumed" {
		t.Fatalf("GET after Resume = %q, %v", got, err)
	}
}

func TestStallCutDropsHeldBytes(t *testing.T) {
	srv, p, rdb := setup(t)
	ctx := context.Background()
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	p.Stall()
	short := redis.NewClient(&redis.Options{Addr: p.Addr(), MaxRetries: -1, ReadTimeout: 100 * time.Millisecond})
	defer short.Close()
	if err := short.Set(ctx, "dropped", "x", 0).Err(); !isTimeout(err) {
		t.Fatalf("SET while stalled: %v, want a timeout", err)
	}
	p.Cut()
	p.Resume()
	if err := rdb.Set(ctx, "marker", "x", 0).Err(); err != nil {
		t.Fatalf("SET after Cut+Resume: %v", err)
	}
	time.Sleep(50 * time.Millisecond)
	if n, err := srv.Client(t).Exists(ctx, "dropped").Result(); err != nil || n != 0 {
		t.Errorf("EXISTS dropped = %d, %v; want the held SET dropped by Cut", n, err)
	}
}

func TestClose(t *testing.T) {
	srv := redistest.Start(t, redisproc.Options{})
	p := Start(t, srv.Addr())
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p.Stall() // Close must also end goroutines held by a stall.
	io.WriteString(c, "PING\r\n")
	waitFor(t, "Conns() == 1", func() bool { return p.Conns() == 1 })
	p.Close()
	p.Close() // idempotent
	if got := p.Conns(); got != 0 {
		t.Errorf("Conns() after Close = %d", got)
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Errorf("read after Close: %v, want the connection closed", err)
	}
	if c2, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		c2.Close()
		t.Errorf("the proxy still accepts connections after Close")
	}
}

func TestTargetDown(t *testing.T) {
	// Nothing listens on the target: accepted connections are closed.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	target := l.Addr().String()
	l.Close()
	p := Start(t, target)
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Errorf("read with the target down: %v, want the connection closed", err)
	}
	waitFor(t, "Conns() == 0", func() bool { return p.Conns() == 0 })
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
