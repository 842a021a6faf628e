// Command emailgate sends an email campaign through consentd: it reads
// recipients as CSV on stdin and a message template from a file, asks
// consentd (MaySend) before each message, and sends the allowed ones over
// SMTP, one message per recipient, each with its own one-click unsubscribe
// link (List-Unsubscribe and List-Unsubscribe-Post, RFC 8058) minted by
// consentd. The others are skipped with the reason.
//
//	emailgate --purpose email_marketing --smtp 127.0.0.1:25 --from news@example.com \
//	    --template news.txt --unsubscribe-base https://mail.example.com < recipients.csv
//
// The CSV has a header row with an email column; every column is a template
// field. The template is a "Subject: ..." line, a blank line, then the body,
// both text/template, with the row's fields ({{.first_name}}, or {{index .
// "first name"}}) and {{.UnsubscribeURL}}, which the body must show.
//
// Nothing is sent unless the whole input is good: the CSV, every address, the
// template and every message it renders are checked first, and consentd and
// the SMTP server must answer. Then, for each recipient in order:
//
//   - consentd allows it: the message is sent (stdout gets one line per
//     message sent, with its Message-ID);
//   - consentd denies it: skipped, with the reason on stderr;
//   - consentd cannot be asked, or cannot mint the link: not sent, counted as
//     not verified;
//   - the SMTP server refuses it: counted as failed.
//
// A recipient listed twice gets one message. After 5 recipients in a row
// that could not be checked or sent for a reason that is not theirs
// (consentd or the SMTP server gone), the campaign stops instead of trying
// every remaining recipient; they are counted as not attempted. A summary
// line ends every run.
//
// --dry-run asks consentd and mints the links as usual but sends nothing: it
// writes the messages that would be sent to stdout, as an mbox.
//
// Messages go out one at a time over one SMTP connection (opened again if
// the server drops it), with STARTTLS when the server offers it and no SMTP
// AUTH: send through a relay that accepts this host, such as a local MTA.
// The list is held in memory, since it is checked whole before sending.
//
// Exit status: 0 when every recipient was sent or skipped by consentd's
// answer; 1 when anything was not verified, failed or not attempted, or the
// run could not start (bad input, consentd or SMTP unreachable, an unknown
// purpose), with a message on stderr; 2 for a bad command line.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/mail"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/consentd/consentd/client"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	// The first interrupt stops after the message in flight; a second one
	// kills the process.
	context.AfterFunc(ctx, stop)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// defaultAddr is where consentd listens by default.
const defaultAddr = "127.0.0.1:50051"

// config is the command line.
type config struct {
	addr            string
	purpose         string
	smtp            string // host:port; empty with --dry-run
	from            *mail.Address
	template        string // the template file
	unsubscribeBase string
	mailto          string // optional
	dryRun          bool
}

// errFlags is a command-line error the flag package has already reported.
var errFlags = errors.New("bad flags")

func parseArgs(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("emailgate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: emailgate --purpose PURPOSE --smtp HOST:PORT --from ADDRESS --template FILE --unsubscribe-base URL\n"+
			"                 [--addr ADDR] [--mailto ADDRESS] [--dry-run] < recipients.csv\n\n"+
			"Sends one message per recipient of the CSV (a header row with an email column) that consentd allows for PURPOSE.\n\n")
		fs.PrintDefaults()
	}
	addr := getenv("CONSENTD_ADDR")
	if addr == "" {
		addr = defaultAddr
	}
	var from string
	fs.StringVar(&c.addr, "addr", addr, "consentd address: host:port, or unix:PATH; $CONSENTD_ADDR sets the default")
	fs.StringVar(&c.purpose, "purpose", "", "the purpose of the campaign, e.g. email_marketing (required)")
	fs.StringVar(&c.smtp, "smtp", "", "the SMTP server (relay) to send through, host:port (required unless --dry-run)")
	fs.StringVar(&from, "from", "", `the sender, "news@example.com" or "Example News <news@example.com>" (required)`)
	fs.StringVar(&c.template, "template", "", `the message template file: "Subject: ...", a blank line, the body (required)`)
	fs.StringVar(&c.unsubscribeBase, "unsubscribe-base", "", "the public base URL of consentd's --http listener, e.g. https://mail.example.com (required)")
	fs.StringVar(&c.mailto, "mailto", "", "an address that unsubscribes by mail, also offered in List-Unsubscribe")
	fs.BoolVar(&c.dryRun, "dry-run", false, "send nothing: write the messages that would be sent to stdout, as an mbox")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return c, err
		}
		return c, errFlags
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %s (the recipients come on stdin)", strings.Join(fs.Args(), " "))
	}
	for _, req := range []struct{ name, value, example string }{
		{"purpose", c.purpose, "--purpose email_marketing"},
		{"from", from, "--from news@example.com"},
		{"template", c.template, "--template news.txt"},
		{"unsubscribe-base", c.unsubscribeBase, "--unsubscribe-base https://mail.example.com"},
	} {
		if req.value == "" {
			return c, fmt.Errorf("--%s is required, e.g. %s", req.name, req.example)
		}
	}
	if c.addr == "" {
		return c, errors.New("--addr must not be empty")
	}
	if c.smtp == "" && !c.dryRun {
		return c, errors.New("--smtp is required, e.g. --smtp 127.0.0.1:25 (or --dry-run to send nothing)")
	}
	if c.smtp != "" {
		if host, port, err := net.SplitHostPort(c.smtp); err != nil || host == "" || port == "" {
			return c, fmt.Errorf("--smtp: want host:port, like 127.0.0.1:25, got %q", c.smtp)
		}
	}
	var err error
	if c.from, err = parseFrom(from); err != nil {
		return c, err
	}
	if err := checkBase(c.unsubscribeBase); err != nil {
		return c, err
	}
	if c.mailto != "" {
		if err := checkMailto(c.mailto); err != nil {
			return c, err
		}
	}
	return c, nil
}

// parseFrom parses --from: an address, with or without a display name.
func parseFrom(s string) (*mail.Address, error) {
	a, err := mail.ParseAddress(s)
	if err != nil {
		return nil, fmt.Errorf("--from: %q is not an address; want one like news@example.com or \"Example News <news@example.com>\"", s)
	}
	if !plainAddress(a.Address) {
		return nil, fmt.Errorf("--from: %q is not an address an SMTP server takes", a.Address)
	}
	return a, nil
}

// checkBase checks --unsubscribe-base as client.UnsubscribeURL will, so a
// bad one is found before anything is read.
func checkBase(base string) error {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return fmt.Errorf("--unsubscribe-base: want an http(s) URL without user, query or fragment, like https://mail.example.com, got %q", base)
	}
	return nil
}

// baseWarning warns about an http --unsubscribe-base other than on this
// machine: RFC 8058 asks for https, and mail providers show no unsubscribe
// button for an http link.
func baseWarning(base string) string {
	u, err := url.Parse(base)
	if err != nil || u.Scheme != "http" {
		return ""
	}
	switch h := u.Hostname(); {
	case h == "localhost":
		return ""
	case net.ParseIP(h) != nil && net.ParseIP(h).IsLoopback():
		return ""
	}
	return fmt.Sprintf("--unsubscribe-base %s is not https: mail clients offer one-click unsubscribe only for https links (RFC 8058)", base)
}

// checkMailto checks --mailto: a bare address that fits in the
// List-Unsubscribe header.
func checkMailto(s string) error {
	a, err := mail.ParseAddress(strings.TrimPrefix(s, "mailto:"))
	if err != nil || a.Name != "" || a.Address != strings.TrimPrefix(s, "mailto:") || !strings.Contains(client.ListUnsubscribeHeaders("", s)["List-Unsubscribe"], a.Address) {
		return fmt.Errorf("--mailto: want a bare address, like unsubscribe@example.com, got %q", s)
	}
	return nil
}

// run is the whole command; it returns the exit status.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	c, err := parseArgs(args, getenv, stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errFlags):
		return 2
	case err != nil:
		fmt.Fprintf(stderr, "emailgate: %v\n", err)
		return 2
	}
	if w := baseWarning(c.unsubscribeBase); w != "" {
		fmt.Fprintf(stderr, "emailgate: warning: %s\n", w)
	}
	switch err := campaign(ctx, c, stdin, stdout, stderr); {
	case errors.Is(err, errIncomplete): // the summary says it
		return 1
	case err != nil:
		fmt.Fprintf(stderr, "emailgate: %v\n", err)
		return 1
	}
	return 0
}
