package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"text/template"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/consentd/consentd/client"
)

// letter is the campaign's template: a subject line and a body, both
// text/template.
type letter struct {
	subject, body *template.Template
}

// subjectPrefix starts a template file.
const subjectPrefix = "Subject:"

// loadLetter reads and parses the template file at path: a first line
// "Subject: ...", a blank line, then the body. Errors name the file and the
// line, as text/template does ("template: news.txt:4: ...").
func loadLetter(path string) (*letter, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("template: %v", err)
	}
	name := filepath.Base(path)
	if !utf8.Valid(b) {
		return nil, fmt.Errorf("template: %s is not UTF-8 text", name)
	}
	text := strings.TrimPrefix(strings.ReplaceAll(string(b), "\r\n", "\n"), "\ufeff")
	first, rest, _ := strings.Cut(text, "\n")
	if len(first) < len(subjectPrefix) || !strings.EqualFold(first[:len(subjectPrefix)], subjectPrefix) {
		return nil, fmt.Errorf("template: %s:1: want the subject first, a line \"Subject: ...\", got %q", name, first)
	}
	blank, body, _ := strings.Cut(rest, "\n")
	if strings.TrimSpace(blank) != "" {
		return nil, fmt.Errorf("template: %s:2: want a blank line after the subject, got %q", name, blank)
	}
	// The subject keeps its "Subject:" and the body gets two empty lines
	// before it, so text/template's line and column numbers are the file's;
	// render strips them again.
	l := &letter{}
	if l.subject, err = template.New(name).Option("missingkey=error").Parse(subjectPrefix + first[len(subjectPrefix):]); err != nil {
		return nil, err
	}
	if l.body, err = template.New(name).Option("missingkey=error").Parse("\n\n" + body); err != nil {
		return nil, err
	}
	return l, nil
}

// render fills the template with a recipient's fields and the message's
// unsubscribe link.
func (l *letter) render(fields map[string]string, link string) (subject, body string, err error) {
	data := maps.Clone(fields)
	data[unsubscribeField] = link
	var b strings.Builder
	if err := l.subject.Execute(&b, data); err != nil {
		return "", "", err
	}
	subject = strings.TrimSpace(strings.TrimPrefix(b.String(), subjectPrefix))
	b.Reset()
	if err := l.body.Execute(&b, data); err != nil {
		return "", "", err
	}
	body = strings.TrimPrefix(b.String(), "\n\n")
	switch {
	case subject == "":
		return "", "", errors.New("the subject is empty")
	case strings.ContainsAny(subject, "\r\n"):
		return "", "", fmt.Errorf("the subject has a line break (from a field?): %q", subject)
	case strings.IndexFunc(subject, func(r rune) bool { return unicode.IsControl(r) && r != '\t' }) >= 0:
		return "", "", fmt.Errorf("the subject has a control character (from a field?): %q", subject)
	case !utf8.ValidString(subject) || !utf8.ValidString(body):
		return "", "", errors.New("the message is not UTF-8 text (is the CSV UTF-8?)")
	case !strings.Contains(body, link):
		return "", "", fmt.Errorf("the body does not show the unsubscribe link: put {{.%s}} in it", unsubscribeField)
	}
	return subject, body, nil
}

// message is one email, ready for SMTP.
type message struct {
	from, to string // the envelope: bare addresses
	id       string // the Message-ID, with its angle brackets
	data     []byte // headers and body, lines ending in CRLF
}

// composer builds the campaign's messages.
type composer struct {
	letter *letter
	from   *mail.Address
	mailto string // for List-Unsubscribe; may be empty
}

// maxHeaderLine is RFC 5322's limit on a line, without its CRLF, for
// headers and body alike.
const maxHeaderLine = 998

// compose builds the message to r, with link as its one-click unsubscribe
// link, dated date.
func (c *composer) compose(r recipient, link string, date time.Time) (*message, error) {
	subject, body, err := c.letter.render(r.fields, link)
	if err != nil {
		return nil, err
	}
	unsub := client.ListUnsubscribeHeaders(link, c.mailto)
	if unsub["List-Unsubscribe-Post"] == "" {
		return nil, fmt.Errorf("the unsubscribe link %q cannot go in a header", link)
	}
	m := &message{from: c.from.Address, to: r.email, id: messageID(c.from.Address)}
	body = strings.ReplaceAll(body, "\r\n", "\n")
	if !strings.HasSuffix(body, "\n") {
		body += "\n"
	}
	encoding := "7bit"
	if !sevenBit(body) {
		encoding = "quoted-printable"
	}
	var b bytes.Buffer
	for _, h := range [][2]string{
		{"From", c.from.String()},
		{"To", r.email},
		{"Subject", mime.QEncoding.Encode("utf-8", subject)},
		{"Date", date.Format(time.RFC1123Z)},
		{"Message-ID", m.id},
		{"MIME-Version", "1.0"},
		{"Content-Type", "text/plain; charset=utf-8"},
		{"Content-Transfer-Encoding", encoding},
		{"List-Unsubscribe", unsub["List-Unsubscribe"]},
		{"List-Unsubscribe-Post", unsub["List-Unsubscribe-Post"]},
	} {
		if err := writeHeader(&b, h[0], h[1]); err != nil {
			return nil, err
		}
	}
	b.WriteString("\r\n")
	if encoding == "7bit" {
		b.WriteString(strings.ReplaceAll(body, "\n", "\r\n"))
	} else {
		qp := quotedprintable.NewWriter(&b) // turns line breaks into CRLF, keeps lines under 77 bytes
		qp.Write([]byte(body))
		qp.Close() // writes to a bytes.Buffer: cannot fail
	}
	m.data = b.Bytes()
	return m, nil
}

// sevenBit reports whether body (LF line endings) can go as it is: ASCII
// text in lines of at most 998 bytes. Then readers see it, links and all,
// exactly as written; anything else goes quoted-printable.
func sevenBit(body string) bool {
	for line := range strings.Lines(body) {
		line = strings.TrimSuffix(line, "\n")
		if len(line) > maxHeaderLine {
			return false
		}
		for i := 0; i < len(line); i++ {
			if c := line[i]; c >= 0x7f || (c < ' ' && c != '\t') {
				return false
			}
		}
	}
	return true
}

// writeHeader writes "name: value" to b, folded at spaces to lines of about
// 78 characters (unfolding gives value back). A word too long for one line
// is an error.
func writeHeader(b *bytes.Buffer, name, value string) error {
	b.WriteString(name)
	b.WriteByte(':')
	col := len(name) + 1
	for i, w := range strings.Split(value, " ") {
		if len(w) > maxHeaderLine-1 {
			return fmt.Errorf("the %s header is too long for a line (%d characters without a space)", name, len(w))
		}
		if i > 0 && w != "" && col+1+len(w) > 78 {
			b.WriteString("\r\n")
			col = 0
		}
		b.WriteByte(' ')
		b.WriteString(w)
		col += 1 + len(w)
	}
	b.WriteString("\r\n")
	return nil
}

// messageID returns a new, globally unique Message-ID in the sender's
// domain.
func messageID(from string) string {
	var r [16]byte
	rand.Read(r[:]) // never fails (crypto/rand)
	domain := from[strings.LastIndex(from, "@")+1:]
	return "<" + hex.EncodeToString(r[:]) + "@" + domain + ">"
}
