package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/consentd/consentd/client"
	"github.com/consentd/consentd/consent"
)

// connectTimeout bounds the checks on consentd before the campaign.
const connectTimeout = 10 * time.Second

// maxConsecutiveFailures is how many recipients in a row may fail for a
// reason that is not theirs (consentd unreachable or failing, the SMTP
// server gone) before the campaign stops. Each such recipient costs a
// client timeout with retries, and a campaign that carries on through an
// outage only turns every remaining recipient into a "not verified" line;
// stopping says at once that the run needs repeating. Failures that belong
// to one recipient (consentd calls the contact invalid, the SMTP server
// refuses the address) do not count.
const maxConsecutiveFailures = 5

// errIncomplete ends a campaign whose summary says what was not sent.
var errIncomplete = errors.New("not every recipient was verified and sent")

// campaign runs the whole campaign: it checks the input and the servers,
// then gates and sends each message. An error means the campaign did not
// start, or (errIncomplete, already reported) did not reach everyone.
func campaign(ctx context.Context, c config, stdin io.Reader, stdout, stderr io.Writer) error {
	l, err := loadLetter(c.template)
	if err != nil {
		return err
	}
	list, err := readRecipients(stdin)
	if err != nil {
		return err
	}
	comp := &composer{letter: l, from: c.from, mailto: c.mailto}
	// Every message must render before the first is sent: a template that
	// fails on one row fails before anyone got a message.
	preview := previewLink(c.unsubscribeBase)
	for _, r := range list {
		if _, err := comp.compose(r, preview, time.Now()); err != nil {
			return fmt.Errorf("line %d: %v; nothing was sent", r.line, err)
		}
	}

	cl, err := client.New(c.addr)
	if err != nil {
		return fmt.Errorf("consentd address %q: %w", c.addr, err)
	}
	defer cl.Close()
	if err := ready(ctx, cl, c.addr, c.purpose); err != nil {
		return fmt.Errorf("%v; nothing was sent", err)
	}
	var out outbox
	if c.dryRun {
		out = newMbox(stdout)
	} else {
		o, err := dialSMTP(ctx, c.smtp)
		if err != nil {
			return fmt.Errorf("cannot use the SMTP server at %s: %v; nothing was sent", c.smtp, err)
		}
		out = o
	}
	s := &sender{cfg: c, consentd: cl, messages: comp, out: out, stdout: stdout, stderr: stderr, seen: map[string]int{}}
	s.sum.recipients = len(list)
	s.run(ctx, list)
	out.Close() // QUIT: every message sent was acknowledged already
	s.report()
	if s.fatal != nil || s.sum.notVerified+s.sum.failed+s.sum.notAttempted > 0 {
		return errIncomplete
	}
	return nil
}

// previewLink stands in for the unsubscribe link while the messages are
// checked: a link of the real one's shape and length.
func previewLink(base string) string {
	u, _ := url.Parse(base) // checked by parseArgs
	return u.JoinPath("unsubscribe", strings.Repeat("P", 120)).String()
}

// ready checks that consentd answers, serves, and knows the purpose.
func ready(ctx context.Context, cl *client.Client, addr, purpose string) error {
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	var known []string
	err := cl.Health(cctx)
	if err == nil {
		ps, lerr := cl.ListPurposes(cctx)
		for _, p := range ps {
			known = append(known, p.GetName())
		}
		err = lerr
	}
	switch {
	case err == nil && !slices.Contains(known, purpose):
		return fmt.Errorf("consentd at %s knows no purpose %q (known: %s)", addr, purpose, strings.Join(known, ", "))
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return errors.New("interrupted")
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("consentd at %s did not answer within %v", addr, connectTimeout)
	default:
		return fmt.Errorf("cannot use consentd at %s: %v", addr, err)
	}
}

// summary counts what happened to the recipients.
type summary struct {
	recipients   int
	sent         int
	skipped      map[string]int // by reason: consent's reasons, and "duplicate"
	notVerified  int
	failed       int
	notAttempted int
}

// sender sends the campaign, one recipient at a time.
type sender struct {
	cfg      config
	consentd *client.Client
	messages *composer
	out      outbox
	stdout   io.Writer
	stderr   io.Writer

	seen  map[string]int // line of the first row for each address, lowercased
	sum   summary
	fatal error // why the campaign stopped early, when it did
}

// outcome is what became of one recipient.
type outcome int

const (
	sent outcome = iota
	skipped
	notVerified
	failed
	notAttempted // interrupted before anything was sent to it
)

func (s *sender) run(ctx context.Context, list []recipient) {
	s.sum.skipped = map[string]int{}
	streak := 0 // recipients in a row that failed for a reason not theirs
	for i, r := range list {
		if ctx.Err() != nil || streak >= maxConsecutiveFailures || s.fatal != nil {
			s.sum.notAttempted += len(list) - i
			break
		}
		o, theirs := s.deliver(ctx, r)
		switch o {
		case sent:
			s.sum.sent++
		case notVerified:
			s.sum.notVerified++
		case failed:
			s.sum.failed++
		case notAttempted:
			s.sum.notAttempted++
		}
		switch {
		case o == notVerified || o == failed:
			if !theirs {
				streak++
			}
		default:
			streak = 0
		}
	}
	switch {
	case s.fatal != nil:
	case ctx.Err() != nil:
		s.fatal = fmt.Errorf("interrupted; %d recipients not attempted", s.sum.notAttempted)
	case streak >= maxConsecutiveFailures && s.sum.notAttempted > 0:
		s.fatal = fmt.Errorf("stopped after %d recipients in a row could not be verified or sent (is consentd or the SMTP server failing?); %d recipients not attempted", streak, s.sum.notAttempted)
	}
}

// deliver gates and sends the message to r. theirs says a failure belongs
// to this recipient, not to consentd or the SMTP server.
func (s *sender) deliver(ctx context.Context, r recipient) (o outcome, theirs bool) {
	key := strings.ToLower(r.email)
	if first, dup := s.seen[key]; dup {
		s.skip(r, "duplicate", fmt.Sprintf("duplicate of line %d", first))
		return skipped, false
	}
	s.seen[key] = r.line

	ok, d, err := s.consentd.MaySend(ctx, r.email, s.cfg.purpose)
	switch {
	case ctx.Err() != nil:
		return notAttempted, false
	case err != nil:
		s.logf(r, "not verified, not sent: %v", err)
		return notVerified, errors.Is(err, consent.ErrInvalid)
	case !ok:
		s.skip(r, d.Reason.String(), d.Reason.String())
		return skipped, false
	}
	link, err := s.consentd.UnsubscribeURL(ctx, s.cfg.unsubscribeBase, r.email, s.cfg.purpose)
	switch {
	case ctx.Err() != nil:
		return notAttempted, false
	case err != nil:
		s.logf(r, "not verified, not sent: no unsubscribe link: %v", err)
		return notVerified, errors.Is(err, consent.ErrInvalid)
	}
	m, err := s.messages.compose(r, link, time.Now())
	if err != nil { // it rendered with the preview link: only a strange link lands here
		s.logf(r, "failed: %v", err)
		return failed, true
	}
	if err := s.out.Send(ctx, m); err != nil {
		if s.cfg.dryRun {
			s.fatal = err
			return failed, false
		}
		s.logf(r, "failed: %v", err)
		return failed, recipientRefused(err)
	}
	if !s.cfg.dryRun {
		fmt.Fprintf(s.stdout, "line %d: %s: sent %s\n", r.line, r.email, m.id)
	}
	return sent, false
}

func (s *sender) skip(r recipient, reason, why string) {
	s.sum.skipped[reason]++
	s.logf(r, "skipped: %s", why)
}

// logf writes one line about r to stderr.
func (s *sender) logf(r recipient, format string, args ...any) {
	fmt.Fprintf(s.stderr, "emailgate: line %d: %s: %s\n", r.line, r.email, fmt.Sprintf(format, args...))
}

// report writes the summary line (after why the campaign stopped, if it
// did):
//
//	emailgate: 7 recipients: 2 sent, 4 skipped (no_consent 2, withdrawn 1, duplicate 1), 0 not verified, 1 failed
func (s *sender) report() {
	if s.fatal != nil {
		fmt.Fprintf(s.stderr, "emailgate: %v\n", s.fatal)
	}
	sum := s.sum
	var b strings.Builder
	fmt.Fprintf(&b, "emailgate: %d recipients: ", sum.recipients)
	if s.cfg.dryRun {
		fmt.Fprintf(&b, "%d would be sent (dry run)", sum.sent)
	} else {
		fmt.Fprintf(&b, "%d sent", sum.sent)
	}
	order := append(reasonNames(), "duplicate")
	for _, name := range slices.Sorted(maps.Keys(sum.skipped)) {
		if !slices.Contains(order, name) {
			order = append(order, name)
		}
	}
	total := 0
	var reasons []string
	for _, name := range order {
		if n := sum.skipped[name]; n > 0 {
			total += n
			reasons = append(reasons, fmt.Sprintf("%s %d", name, n))
		}
	}
	fmt.Fprintf(&b, ", %d skipped", total)
	if len(reasons) > 0 {
		fmt.Fprintf(&b, " (%s)", strings.Join(reasons, ", "))
	}
	fmt.Fprintf(&b, ", %d not verified, %d failed", sum.notVerified, sum.failed)
	if sum.notAttempted > 0 {
		fmt.Fprintf(&b, ", %d not attempted", sum.notAttempted)
	}
	fmt.Fprintln(s.stderr, b.String())
}

// reasonNames lists consent's reasons for a denial, in their order.
func reasonNames() []string {
	var names []string
	for _, r := range consent.Reasons() {
		if r != consent.ReasonGranted {
			names = append(names, r.String())
		}
	}
	return names
}
