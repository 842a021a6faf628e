// Package redisproc runs redis-server processes on free loopback ports, each
// in a directory of its own, and stops them by PID: the one implementation
// behind the tests' servers (internal/redistest) and the harness's
// (cmd/consentbench, bench/soak).
package redisproc

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	// MaxPort keeps cluster bus ports (port+10000) inside the port range:
	// every port Start picks is below it.
	MaxPort = 55000
	// busOffset is the distance from a node's port to its cluster bus port.
	busOffset = 10000

	startAttempts = 5
	readyTimeout  = 20 * time.Second
	exitTimeout   = 15 * time.Second
)

// Options for a server.
type Options struct {
	// Extra redis.conf directives as "name value" lines, e.g. "maxmemory 100mb".
	// They are written after the defaults, so they override them.
	Config []string
	// Cluster turns on cluster-enabled yes.
	Cluster bool
	// Sentinel runs it as a Sentinel (redis-server --sentinel); give it
	// "sentinel monitor NAME HOST PORT QUORUM" in Config.
	Sentinel bool
}

// Server is one redis-server, run and re-run on the same port and directory.
// Its methods are safe for concurrent use.
type Server struct {
	Port int    // the TCP port on 127.0.0.1
	Dir  string // redis.conf, redis.log, the AOF, nodes.conf

	addr     string
	conf     string
	sentinel bool

	mu   sync.Mutex
	proc *process // nil when not running
}

// process is one run of redis-server.
type process struct {
	cmd    *exec.Cmd
	pid    int
	exited chan struct{} // closed once the process has been reaped
	err    error         // Wait's result, set before exited is closed
}

// Start runs a redis-server in dir (which must exist) with consentd's
// settings (appendonly yes, appendfsync always, no RDB snapshots) plus
// o.Config, and returns once it answers PING and has loaded its data. The
// caller must Kill or Stop it.
func Start(dir string, o Options) (*Server, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server not found in PATH (install the Debian package redis-server): %w", err)
	}
	s := &Server{Dir: dir, conf: filepath.Join(dir, "redis.conf"), sentinel: o.Sentinel}
	var lastErr error
	for range startAttempts {
		port, err := freePort(o.Cluster)
		if err != nil {
			return nil, fmt.Errorf("no free port: %w", err)
		}
		s.Port = port
		s.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if err := os.WriteFile(s.conf, []byte(config(dir, port, o)), 0o600); err != nil {
			return nil, err
		}
		err = s.launch(bin)
		if err == nil {
			return s, nil
		}
		lastErr = err
		if !errors.Is(err, errAddrInUse) {
			break
		}
		os.Remove(filepath.Join(dir, "redis.log"))
		os.Remove(filepath.Join(dir, "stdout.log"))
	}
	return nil, fmt.Errorf("start redis-server: %w", lastErr)
}

// Addr returns "127.0.0.1:PORT".
func (s *Server) Addr() string { return s.addr }

// PID returns the process id of the running server, or 0 if it is not running.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return 0
	}
	return s.proc.pid
}

// Kill sends SIGKILL to the server, if it runs, and waits until it has
// exited. It works on a stopped (SIGSTOP) server too.
func (s *Server) Kill() error {
	p := s.take()
	if p == nil {
		return nil
	}
	if err := p.signal(syscall.SIGKILL); err != nil {
		return err
	}
	select {
	case <-p.exited:
		return nil
	case <-time.After(exitTimeout):
		return fmt.Errorf("%s: pid %d still running %v after SIGKILL", s.addr, p.pid, exitTimeout)
	}
}

// Stop sends SIGTERM to the server (a graceful shutdown: the AOF is flushed,
// and an RDB saved if the config asks for one) and waits until it has
// exited; past a timeout it kills it and says so.
func (s *Server) Stop() error {
	p := s.take()
	if p == nil {
		return nil
	}
	if err := p.signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("SIGTERM %d: %w", p.pid, err)
	}
	select {
	case <-p.exited:
		return nil
	case <-time.After(exitTimeout):
		p.signal(syscall.SIGKILL)
		<-p.exited
		return fmt.Errorf("%s (pid %d) did not exit within %v of SIGTERM; killed\n%s", s.addr, p.pid, exitTimeout, s.LogTail())
	}
}

// Signal sends sig to the running server (SIGSTOP and SIGCONT hang and
// resume it); it is an error if it does not run.
func (s *Server) Signal(sig syscall.Signal) error {
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if p == nil {
		return fmt.Errorf("%s: %v to a server that does not run", s.addr, sig)
	}
	return p.signal(sig)
}

// Restart starts the server again after Kill or Stop, with the same port,
// directory and config. It returns once the server answers PING and has
// finished loading its data.
func (s *Server) Restart() error {
	if pid := s.PID(); pid != 0 {
		return fmt.Errorf("restart of %s while it is running (pid %d)", s.addr, pid)
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return err
	}
	for range startAttempts {
		// The old process released the port; if something else grabbed it
		// in between, wait a little for it to go away.
		if err = s.launch(bin); err == nil || !errors.Is(err, errAddrInUse) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("restart redis-server: %w", err)
	}
	return nil
}

// Reconfigure adds redis.conf directives ("name value" lines) to the
// stopped server (after Stop or Kill), for the next Restart. Later lines
// override earlier ones.
func (s *Server) Reconfigure(lines ...string) error {
	if pid := s.PID(); pid != 0 {
		return fmt.Errorf("reconfigure of %s while it is running (pid %d)", s.addr, pid)
	}
	f, err := os.OpenFile(s.conf, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(strings.Join(lines, "\n") + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

var errAddrInUse = errors.New("address already in use")

// launch runs redis-server with s.conf and waits until it is ready.
func (s *Server) launch(bin string) error {
	// A file, not a pipe: exec.Cmd then starts no copying goroutines, and
	// Wait returns when redis-server exits even if a fork child of it still
	// holds the descriptor.
	out, err := os.OpenFile(filepath.Join(s.Dir, "stdout.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	args := []string{s.conf}
	if s.sentinel {
		args = append(args, "--sentinel")
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = s.Dir
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = sysProcAttr()
	p := &process{cmd: cmd, exited: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		// Pdeathsig fires when the thread that started the child exits, not
		// the process, and Go ends a thread whose goroutine returns while
		// locked to it (bench's pacer does): start redis-server from a
		// thread this goroutine holds until the child has exited.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		p.err = cmd.Wait()
		close(p.exited)
	}()
	err = <-started
	out.Close()
	if err != nil {
		return err
	}
	p.pid = cmd.Process.Pid
	s.mu.Lock()
	s.proc = p
	s.mu.Unlock()

	err = waitReady(s.addr, p.exited, readyTimeout)
	if err == nil {
		return nil
	}
	if kerr := s.Kill(); kerr != nil {
		err = fmt.Errorf("%v; %v", err, kerr)
	} else {
		err = fmt.Errorf("%v (exit: %v)", err, p.err)
	}
	tail := s.LogTail()
	if strings.Contains(tail, "Address already in use") {
		return fmt.Errorf("%w: port %d or %d\n%s", errAddrInUse, s.Port, s.Port+busOffset, tail)
	}
	return fmt.Errorf("%s (pid %d): %v\n%s", s.addr, p.pid, err, tail)
}

// signal sends sig to the process. It goes through os.Process, which on
// Linux holds a pidfd, so a signal can never reach another process that
// reused the PID after this one was reaped.
func (p *process) signal(sig syscall.Signal) error {
	err := p.cmd.Process.Signal(sig)
	if errors.Is(err, os.ErrProcessDone) {
		return nil
	}
	return err
}

// take detaches the running process, if any, from s.
func (s *Server) take() *process {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.proc
	s.proc = nil
	return p
}

// LogTail returns the end of redis.log and anything the process printed.
func (s *Server) LogTail() string {
	var b strings.Builder
	if data, err := os.ReadFile(filepath.Join(s.Dir, "redis.log")); err == nil {
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		if len(lines) > 40 {
			lines = lines[len(lines)-40:]
		}
		b.WriteString("--- redis.log (tail) ---\n")
		b.WriteString(strings.Join(lines, "\n"))
		b.WriteString("\n")
	}
	if out, err := os.ReadFile(filepath.Join(s.Dir, "stdout.log")); err == nil && len(out) > 0 {
		b.WriteString("--- stdout/stderr ---\n")
		b.Write(out)
	}
	return b.String()
}

func config(dir string, port int, o Options) string {
	lines := []string{
		"bind 127.0.0.1",
		"port " + strconv.Itoa(port),
		"dir " + quote(dir),
		"appendonly yes",
		"appendfsync always",
		`save ""`,
		"protected-mode no",
		"daemonize no",
		"logfile " + quote(filepath.Join(dir, "redis.log")),
	}
	if o.Cluster {
		lines = append(lines,
			"cluster-enabled yes",
			"cluster-config-file "+quote(filepath.Join(dir, "nodes.conf")),
			"cluster-node-timeout 2000",
			"cluster-announce-ip 127.0.0.1",
		)
	}
	lines = append(lines, o.Config...)
	return strings.Join(lines, "\n") + "\n"
}

// quote makes a path safe as one redis.conf argument.
func quote(s string) string { return strconv.Quote(s) }

var ports struct {
	sync.Mutex
	used map[int]bool // handed out by this process; never reused
}

// freePort returns a port on 127.0.0.1 that nothing listens on, below MaxPort,
// whose bus port (port+10000) is free too if cluster is set. The port is
// released before it returns, so a race with another process is possible; the
// callers retry when redis cannot bind.
func freePort(cluster bool) (int, error) {
	ports.Lock()
	defer ports.Unlock()
	if ports.used == nil {
		ports.used = make(map[int]bool)
	}
	for range 200 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if port >= MaxPort || ports.used[port] || ports.used[port+busOffset] {
			continue
		}
		if cluster && !canListen(port+busOffset) {
			continue
		}
		ports.used[port] = true
		ports.used[port+busOffset] = true
		return port, nil
	}
	return 0, errors.New("gave up after 200 tries")
}

func canListen(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// waitReady polls addr until PING answers PONG and INFO says loading:0, the
// process exits, or timeout passes.
func waitReady(addr string, exited <-chan struct{}, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	delay := 5 * time.Millisecond
	var last error
	for {
		select {
		case <-exited:
			return fmt.Errorf("redis-server exited during startup (last probe: %v)", last)
		default:
		}
		last = probe(addr)
		if last == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v: %v", timeout, last)
		}
		select {
		case <-exited:
		case <-time.After(delay):
		}
		delay = min(2*delay, 100*time.Millisecond)
	}
}

// probe sends PING and INFO persistence over a plain connection.
func probe(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	r := bufio.NewReader(c)
	if _, err := c.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		return err
	}
	pong, err := readReply(r)
	if err != nil {
		return err
	}
	if pong != "PONG" {
		return fmt.Errorf("PING: %q", pong)
	}
	if _, err := c.Write([]byte("*2\r\n$4\r\nINFO\r\n$11\r\npersistence\r\n")); err != nil {
		return err
	}
	info, err := readReply(r)
	if err != nil {
		return err
	}
	// A Sentinel has no persistence section, and nothing to load.
	if strings.Contains(info, "loading:") && !strings.Contains(info, "loading:0") {
		return errors.New("still loading")
	}
	return nil
}

// readReply reads one simple-string, error or bulk-string RESP2 reply.
func readReply(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return "", errors.New("empty reply")
	}
	switch line[0] {
	case '+':
		return line[1:], nil
	case '-':
		return "", fmt.Errorf("redis: %s", line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", fmt.Errorf("bad bulk length %q", line)
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
	return "", fmt.Errorf("unexpected reply %q", line)
}
