package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// smtpServer is a small, real SMTP server on a loopback port: it speaks
// enough of RFC 5321 for net/smtp (EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP,
// QUIT; no AUTH, no STARTTLS) and keeps every message it accepts, as it
// came off the wire. It is strict where a real server is: commands out of
// order get 503, lines must end in CRLF and stay within 1000 bytes; a
// violation is recorded and fails the test at cleanup.
type smtpServer struct {
	addr string
	opts smtpOptions
	lis  net.Listener
	wg   sync.WaitGroup

	mu         sync.Mutex
	msgs       []delivered
	conns      int               // connections accepted
	open       map[net.Conn]bool // to close them at cleanup
	closed     bool
	violations []string
}

type smtpOptions struct {
	// refuse maps a recipient to the reply its RCPT TO gets, e.g.
	// "550 5.1.1 no such user".
	refuse map[string]string
	// closeAfter, when positive, drops each connection (without a reply to
	// anything after) once it has carried that many messages, as servers
	// that limit messages per connection do.
	closeAfter int
	// accepted, when set, runs after a message is taken and before the
	// server answers its DATA with 250.
	accepted func(n int, d delivered)
}

// delivered is one accepted message.
type delivered struct {
	from string   // MAIL FROM
	to   []string // RCPT TO
	data []byte   // the message, dot-unstuffed, CRLF line endings as sent
}

// startSMTP runs an SMTP server until the end of the test; cleanup closes
// the listener and every connection and waits for their goroutines.
func startSMTP(t *testing.T, opts smtpOptions) *smtpServer {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &smtpServer{addr: lis.Addr().String(), opts: opts, lis: lis, open: map[net.Conn]bool{}}
	s.wg.Go(s.accept)
	t.Cleanup(func() {
		lis.Close()
		s.mu.Lock()
		s.closed = true
		for c := range s.open {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
		for _, v := range s.violations {
			t.Errorf("SMTP protocol violation by the client: %s", v)
		}
	})
	return s
}

// messages returns the messages accepted so far.
func (s *smtpServer) messages() []delivered {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]delivered(nil), s.msgs...)
}

// connections returns how many connections the server has accepted.
func (s *smtpServer) connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns
}

func (s *smtpServer) accept() {
	for {
		c, err := s.lis.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns++
		s.open[c] = true
		s.mu.Unlock()
		s.wg.Go(func() {
			defer func() {
				c.Close()
				s.mu.Lock()
				delete(s.open, c)
				s.mu.Unlock()
			}()
			s.serve(c)
		})
	}
}

func (s *smtpServer) violation(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.violations = append(s.violations, fmt.Sprintf(format, args...))
}

// serve runs one SMTP session on c.
func (s *smtpServer) serve(c net.Conn) {
	c.SetDeadline(time.Now().Add(time.Minute))
	r := bufio.NewReader(c)
	w := bufio.NewWriter(c)
	reply := func(lines ...string) {
		for _, l := range lines {
			w.WriteString(l + "\r\n")
		}
		w.Flush()
	}
	readLine := func() (string, error) {
		line, err := r.ReadString('\n')
		if err != nil {
			return "", err
		}
		if !strings.HasSuffix(line, "\r\n") {
			s.violation("line %q does not end in CRLF", line)
		}
		if len(line) > 1000 {
			s.violation("line of %d bytes, over 1000 with CRLF", len(line))
		}
		return strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r"), nil
	}
	reply("220 emailgate-test ESMTP ready")
	var (
		greeted bool
		inMail  bool
		from    string
		to      []string
		carried int
	)
	reset := func() { inMail, from, to = false, "", nil }
	for {
		line, err := readLine()
		if err != nil {
			return
		}
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO":
			greeted = true
			reset()
			reply("250-emailgate-test greets "+arg, "250-8BITMIME", "250 SMTPUTF8")
		case "HELO":
			greeted = true
			reset()
			reply("250 emailgate-test")
		case "MAIL":
			addr, ok := path(arg, "FROM:")
			switch {
			case !greeted:
				reply("503 5.5.1 EHLO first")
			case inMail:
				reply("503 5.5.1 nested MAIL command")
			case !ok:
				reply("501 5.5.4 syntax: MAIL FROM:<address>")
			default:
				inMail, from = true, addr
				reply("250 2.1.0 sender ok")
			}
		case "RCPT":
			addr, ok := path(arg, "TO:")
			switch {
			case !inMail:
				reply("503 5.5.1 MAIL first")
			case !ok:
				reply("501 5.5.4 syntax: RCPT TO:<address>")
			case s.opts.refuse[addr] != "":
				reply(s.opts.refuse[addr])
			default:
				to = append(to, addr)
				reply("250 2.1.5 recipient ok")
			}
		case "DATA":
			if len(to) == 0 {
				reply("503 5.5.1 no valid recipients")
				continue
			}
			reply("354 end data with <CR><LF>.<CR><LF>")
			data, err := s.readData(r)
			if err != nil {
				return
			}
			d := delivered{from: from, to: to, data: data}
			s.mu.Lock()
			s.msgs = append(s.msgs, d)
			n := len(s.msgs)
			s.mu.Unlock()
			if s.opts.accepted != nil {
				s.opts.accepted(n, d)
			}
			reset()
			reply(fmt.Sprintf("250 2.0.0 queued as %d", n))
			carried++
			if s.opts.closeAfter > 0 && carried >= s.opts.closeAfter {
				return // dropped: the next MAIL finds the connection closed
			}
		case "RSET":
			reset()
			reply("250 2.0.0 reset")
		case "NOOP":
			reply("250 2.0.0 ok")
		case "QUIT":
			reply("221 2.0.0 bye")
			return
		default:
			reply("502 5.5.2 command not recognised")
		}
	}
}

// readData reads a message up to the lone dot, undoing dot-stuffing and
// keeping the CRLFs.
func (s *smtpServer) readData(r *bufio.Reader) ([]byte, error) {
	var b bytes.Buffer
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil, err
		}
		if !strings.HasSuffix(line, "\r\n") {
			s.violation("message line %q does not end in CRLF", line)
		}
		if len(line) > 1000 {
			s.violation("message line of %d bytes, over 1000 with CRLF", len(line))
		}
		if line == ".\r\n" {
			return b.Bytes(), nil
		}
		b.WriteString(strings.TrimPrefix(line, "."))
	}
}

// path parses "FROM:<addr> [params]" (or TO:), returning addr.
func path(arg, prefix string) (string, bool) {
	if len(arg) < len(prefix) || !strings.EqualFold(arg[:len(prefix)], prefix) {
		return "", false
	}
	rest := strings.TrimSpace(arg[len(prefix):])
	if !strings.HasPrefix(rest, "<") {
		return "", false
	}
	addr, _, ok := strings.Cut(rest[1:], ">")
	return addr, ok
}
