// Package faultproxy is a TCP proxy on loopback for fault injection in tests
// and in the soak (bench/soak): it forwards connections to a target and can
// cut them, stall them (a black hole that keeps connections open) or refuse
// them, on demand.
package faultproxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// Proxy forwards every connection accepted on Addr to a target address.
// Its methods are safe for concurrent use.
type Proxy struct {
	ln     net.Listener
	target string

	ctx    context.Context // canceled by Close; aborts dials in progress
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine the proxy started

	mu       sync.Mutex
	closed   bool
	refusing bool
	stall    chan struct{} // non-nil while stalled; closed by Resume
	conns    map[*link]struct{}
}

// link is one proxied connection: the accepted client side and, once dialed,
// the server side.
type link struct {
	client net.Conn
	server net.Conn // nil until dialed; guarded by Proxy.mu
	done   chan struct{}
	once   sync.Once
}

// TB is what Start needs of a test (a *testing.T is one): an interface
// rather than testing.TB, so the harness, which uses New, does not link the
// testing package into its binary.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Cleanup(func())
}

// Start listens on 127.0.0.1:0 and forwards each accepted connection to
// target. The proxy is closed in t.Cleanup.
func Start(t TB, target string) *Proxy {
	t.Helper()
	p, err := New(target)
	if err != nil {
		t.Fatalf("faultproxy: %v", err)
	}
	t.Cleanup(p.Close)
	return p
}

// New listens on 127.0.0.1:0 and forwards each accepted connection to
// target, until Close.
func New(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{
		ln:     ln,
		target: target,
		ctx:    ctx,
		cancel: cancel,
		conns:  make(map[*link]struct{}),
	}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr returns the address the proxy listens on, "127.0.0.1:PORT".
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Cut closes every current connection, both sides. New connections are
// still accepted.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closeAllLocked()
}

// Stall stops forwarding bytes in both directions, on current and new
// connections, keeping them open, until Resume. New connections are still
// accepted and dialed. Bytes that arrive meanwhile are held, and delivered on
// Resume, like a network that heals: a request whose client timed out during
// the stall (and closed its connection) still reaches the server after Resume.
// Use Cut before Resume to drop them instead.
func (p *Proxy) Stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stall == nil {
		p.stall = make(chan struct{})
	}
}

// Refuse closes every current connection and closes new ones as soon as they
// are accepted, until Resume.
func (p *Proxy) Refuse() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refusing = true
	p.closeAllLocked()
}

// Resume undoes Stall and Refuse: connections are accepted and forwarded
// again.
func (p *Proxy) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refusing = false
	if p.stall != nil {
		close(p.stall)
		p.stall = nil
	}
}

// Conns returns the number of currently open proxied connections.
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// Close stops listening, closes every connection and waits for every
// goroutine of the proxy to return. It is safe to call more than once.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.ln.Close()
	p.cancel()
	p.closeAllLocked()
	if p.stall != nil {
		close(p.stall)
		p.stall = nil
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *Proxy) closeAllLocked() {
	for l := range p.conns {
		p.closeLinkLocked(l)
	}
}

func (p *Proxy) closeLinkLocked(l *link) {
	l.once.Do(func() {
		l.client.Close()
		if l.server != nil {
			l.server.Close()
		}
		close(l.done)
	})
	delete(p.conns, l)
}

func (p *Proxy) closeLink(l *link) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closeLinkLocked(l)
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	delay := time.Millisecond
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// A temporary failure (out of descriptors, …): back off.
			select {
			case <-p.ctx.Done():
				return
			case <-time.After(delay):
			}
			delay = min(2*delay, 100*time.Millisecond)
			continue
		}
		delay = time.Millisecond
		p.mu.Lock()
		if p.closed || p.refusing {
			p.mu.Unlock()
			c.Close()
			continue
		}
		l := &link{client: c, done: make(chan struct{})}
		p.conns[l] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go p.serve(l)
	}
}

// serve dials the target for l and copies bytes both ways until either side
// closes or the link is closed.
func (p *Proxy) serve(l *link) {
	defer p.wg.Done()
	var d net.Dialer
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	s, err := d.DialContext(ctx, "tcp", p.target)
	cancel()
	if err != nil {
		p.closeLink(l)
		return
	}
	p.mu.Lock()
	select {
	case <-l.done: // cut, refused or closed while dialing
		p.mu.Unlock()
		s.Close()
		return
	default:
	}
	l.server = s
	p.wg.Add(1)
	p.mu.Unlock()
	go func() {
		defer p.wg.Done()
		p.pipe(l, s, l.client)
	}()
	p.pipe(l, l.client, s)
}

// pipe copies from src to dst, holding bytes while the proxy is stalled,
// and closes the link when either side fails.
func (p *Proxy) pipe(l *link, dst, src net.Conn) {
	defer p.closeLink(l)
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.gate(l) {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// gate blocks while the proxy is stalled. It reports false if the link was
// closed meanwhile.
func (p *Proxy) gate(l *link) bool {
	for {
		p.mu.Lock()
		stall := p.stall
		p.mu.Unlock()
		if stall == nil {
			select {
			case <-l.done:
				return false
			default:
				return true
			}
		}
		select {
		case <-stall:
		case <-l.done:
			return false
		}
	}
}
