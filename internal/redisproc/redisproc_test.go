package redisproc

import (
	"net"
	"runtime"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The start, kill, stop and restart paths are tested through
// internal/redistest; this is what only the soak uses.
func TestSignalStopsAndResumes(t *testing.T) {
	s, err := Start(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Kill()
	if err := probe(s.Addr()); err != nil {
		t.Fatalf("probe of a fresh server: %v", err)
	}
	if err := s.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// A stopped server still accepts connections (the kernel's backlog) but
	// answers nothing.
	start := time.Now()
	if err := probe(s.Addr()); err == nil {
		t.Fatal("a SIGSTOPped server answered PING")
	}
	t.Logf("probe of a stopped server failed after %v", time.Since(start))
	if err := s.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if err := waitReady(s.Addr(), nil, 5*time.Second); err != nil {
		t.Fatalf("after SIGCONT: %v", err)
	}
	// Kill works on a stopped server too.
	if err := s.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	if err := s.Kill(); err != nil {
		t.Fatal(err)
	}
	if c, err := net.DialTimeout("tcp", s.Addr(), time.Second); err == nil {
		c.Close()
		t.Error("a killed server still accepts connections")
	}
	if err := s.Signal(syscall.SIGCONT); err == nil {
		t.Error("Signal to a server that does not run: no error")
	}
}

// TestOutlivesTheStartingThread: Pdeathsig is tied to the thread that
// started redis-server, and Go ends a thread whose goroutine returns locked
// to it (bench's pacer does). The server must not die with it. Three
// servers: a goroutine that runs on the main thread does not end it, and at
// most one can.
func TestOutlivesTheStartingThread(t *testing.T) {
	started := make(chan *Server, 3)
	for range cap(started) {
		dir := t.TempDir()
		go func() {
			runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
			s, err := Start(dir, Options{})
			if err != nil {
				t.Error(err)
			}
			started <- s
		}()
	}
	var servers []*Server
	for range cap(started) {
		if s := <-started; s != nil {
			servers = append(servers, s)
			defer s.Kill()
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	time.Sleep(500 * time.Millisecond) // for the threads to end, and signals to land
	for _, s := range servers {
		if err := probe(s.Addr()); err != nil {
			t.Errorf("redis-server died with the thread that started it: %v", err)
		}
	}
}
