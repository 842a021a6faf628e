package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/smtp"
	"net/textproto"
	"strings"
	"time"
	"unicode"
)

// outbox is where the campaign's messages go: an SMTP server, or stdout on
// a dry run.
type outbox interface {
	// Send delivers one message. An error means it was not accepted.
	Send(ctx context.Context, m *message) error
	// Close ends the session.
	Close() error
}

// Timeouts of the SMTP session.
const (
	smtpDialTimeout = 30 * time.Second
	// smtpTimeout bounds one message's transaction, and the greeting and
	// EHLO of a new connection.
	smtpTimeout = 2 * time.Minute
	// smtpQuitTimeout bounds the goodbye at the end.
	smtpQuitTimeout = 10 * time.Second
	// smtpHelo is the name emailgate gives in EHLO.
	smtpHelo = "localhost"
)

// smtpOutbox sends over one SMTP connection, kept open across messages and
// opened again when the server closes it.
type smtpOutbox struct {
	addr, host string
	conn       net.Conn     // nil when not connected
	c          *smtp.Client // on conn
}

// smtpError is a failed step of an SMTP session.
type smtpError struct {
	step string // "connect", "MAIL FROM", "RCPT TO", "DATA"
	err  error
}

func (e *smtpError) Error() string {
	var reply *textproto.Error
	if errors.As(e.err, &reply) {
		return fmt.Sprintf("the SMTP server refused %s: %03d %s", e.step, reply.Code, printable(reply.Msg))
	}
	return fmt.Sprintf("SMTP %s: %v", e.step, e.err)
}

// printable makes a server's reply text safe for one line of a terminal:
// the lines of a multi-line reply joined by " / ", control characters
// dropped.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return -1
		}
		return r
	}, strings.ReplaceAll(s, "\n", " / "))
}

func (e *smtpError) Unwrap() error { return e.err }

// recipientRefused reports whether err is the server refusing one recipient
// (a reply to RCPT TO), which says nothing about the next one.
func recipientRefused(err error) bool {
	var se *smtpError
	var reply *textproto.Error
	return errors.As(err, &se) && se.step == "RCPT TO" && errors.As(se.err, &reply)
}

// dialSMTP connects to the SMTP server at addr, so an unreachable server is
// found before the first recipient.
func dialSMTP(ctx context.Context, addr string) (*smtpOutbox, error) {
	host, _, _ := net.SplitHostPort(addr) // checked by parseArgs
	o := &smtpOutbox{addr: addr, host: host}
	if err := o.connect(ctx); err != nil {
		return nil, err
	}
	return o, nil
}

// connect opens a session: greeting, EHLO, and STARTTLS when the server
// offers it (as smtp.SendMail does).
func (o *smtpOutbox) connect(ctx context.Context) error {
	d := net.Dialer{Timeout: smtpDialTimeout}
	conn, err := d.DialContext(ctx, "tcp", o.addr)
	if err != nil {
		return &smtpError{"connect", err}
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	conn.SetDeadline(time.Now().Add(smtpTimeout))
	c, err := smtp.NewClient(conn, o.host)
	if err == nil {
		err = c.Hello(smtpHelo)
	}
	if err == nil {
		if ok, _ := c.Extension("STARTTLS"); ok {
			err = c.StartTLS(&tls.Config{ServerName: o.host})
		}
	}
	if err != nil {
		conn.Close()
		return &smtpError{"connect", err}
	}
	o.conn, o.c = conn, c
	return nil
}

// Send sends m in one transaction, bounded by smtpTimeout; ctx bounds only
// connecting. On a kept connection that the server has closed meanwhile,
// the transaction fails at MAIL FROM, before anything of m was accepted,
// and is tried once more on a new connection.
func (o *smtpOutbox) Send(ctx context.Context, m *message) error {
	for attempt := 1; ; attempt++ {
		reused := o.c != nil
		if !reused {
			if err := o.connect(ctx); err != nil {
				return err
			}
		}
		// An interrupt does not cut a transaction short: the message in
		// flight is either accepted or not, never half-known.
		err := o.transaction(m)
		if err == nil {
			return nil
		}
		o.afterFailure(err)
		if reused && attempt == 1 && closedByServer(err) {
			continue
		}
		return err
	}
}

// transaction is MAIL, RCPT and DATA for m.
func (o *smtpOutbox) transaction(m *message) error {
	o.conn.SetDeadline(time.Now().Add(smtpTimeout))
	if err := o.c.Mail(m.from); err != nil {
		return &smtpError{"MAIL FROM", err}
	}
	if err := o.c.Rcpt(m.to); err != nil {
		return &smtpError{"RCPT TO", err}
	}
	w, err := o.c.Data()
	if err != nil {
		return &smtpError{"DATA", err}
	}
	if _, err := w.Write(m.data); err != nil {
		return &smtpError{"DATA", err}
	}
	if err := w.Close(); err != nil { // the final dot, and the server's answer
		return &smtpError{"DATA", err}
	}
	return nil
}

// closedByServer reports whether err is a kept connection found closed at
// the start of a transaction: an I/O error or a 421 (closing) at MAIL FROM.
func closedByServer(err error) bool {
	var se *smtpError
	if !errors.As(err, &se) || se.step != "MAIL FROM" {
		return false
	}
	var reply *textproto.Error
	return !errors.As(se.err, &reply) || reply.Code == 421
}

// afterFailure makes the session usable after a failed transaction: RSET when
// the server answered, otherwise (the connection broke, or is in an unknown
// state) a new connection next time.
func (o *smtpOutbox) afterFailure(err error) {
	var reply *textproto.Error
	if errors.As(err, &reply) && reply.Code != 421 {
		o.conn.SetDeadline(time.Now().Add(smtpTimeout))
		if o.c.Reset() == nil {
			return
		}
	}
	o.conn.Close()
	o.conn, o.c = nil, nil
}

// Close ends the session with QUIT.
func (o *smtpOutbox) Close() error {
	if o.c == nil {
		return nil
	}
	o.conn.SetDeadline(time.Now().Add(smtpQuitTimeout))
	err := o.c.Quit()
	o.conn.Close()
	o.conn, o.c = nil, nil
	return err
}

// mboxOutbox is the dry run's outbox: it writes each message to w in mboxrd
// format (a "From " line before each message, LF line endings, lines that
// start with ">*From " get one more '>'), which mail readers open.
type mboxOutbox struct {
	w *bufio.Writer
}

func newMbox(w io.Writer) *mboxOutbox { return &mboxOutbox{w: bufio.NewWriter(w)} }

func (o *mboxOutbox) Send(_ context.Context, m *message) error {
	fmt.Fprintf(o.w, "From %s %s\n", m.from, time.Now().UTC().Format(time.ANSIC))
	for line := range bytes.Lines(m.data) {
		line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
		if bytes.HasPrefix(bytes.TrimLeft(line, ">"), []byte("From ")) {
			o.w.WriteByte('>')
		}
		o.w.Write(line)
		o.w.WriteByte('\n')
	}
	o.w.WriteByte('\n')
	if err := o.w.Flush(); err != nil {
		return fmt.Errorf("writing stdout: %w", err)
	}
	return nil
}

func (o *mboxOutbox) Close() error { return o.w.Flush() }
