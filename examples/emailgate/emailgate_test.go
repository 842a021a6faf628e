package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"net/http"
	"net/mail"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/consentd/consentd/client"
	"github.com/consentd/consentd/internal/daemontest"
	"github.com/consentd/consentd/internal/redisproc"
	"github.com/consentd/consentd/internal/redistest"
	pb "github.com/consentd/consentd/proto/consent/v1"
)

const (
	purpose = "email_marketing"
	from    = "Example News <news@example.com>"
	mailto  = "unsubscribe@example.com"
)

// newsTemplate is the campaign's template, as a file a marketer writes.
const newsTemplate = `Subject: Spring news for {{.first_name}} ✿

Hello {{.first_name}},

our spring collection is here, and as a {{.plan}} member you see it first.
From the team at Example.

Unsubscribe with one click: {{.UnsubscribeURL}}
`

// newsBody is newsTemplate's body for first_name and plan, with link.
func newsBody(firstName, plan, link string) string {
	return strings.ReplaceAll(fmt.Sprintf("Hello %s,\n\nour spring collection is here, and as a %s member you see it first.\nFrom the team at Example.\n\nUnsubscribe with one click: %s\n", firstName, plan, link), "\n", "\r\n")
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// noEnv is a process environment without CONSENTD_ADDR.
func noEnv(string) string { return "" }

// result is one run of the command.
type result struct {
	code           int
	stdout, stderr string
}

func runGate(ctx context.Context, stdin string, args ...string) result {
	var stdout, stderr bytes.Buffer
	code := run(ctx, args, noEnv, strings.NewReader(stdin), &stdout, &stderr)
	return result{code, stdout.String(), stderr.String()}
}

// writeTemplate writes a template file and returns its path.
func writeTemplate(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "news.txt")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// gateArgs is a campaign's command line against d and the SMTP server at
// smtpAddr, with more flags after.
func gateArgs(d *daemontest.Daemon, smtpAddr, template string, more ...string) []string {
	return append([]string{"--addr", d.Addr, "--purpose", purpose, "--smtp", smtpAddr, "--from", from,
		"--template", template, "--unsubscribe-base", "http://" + d.HTTP, "--mailto", mailto}, more...)
}

func grant(t *testing.T, c *client.Client, req *pb.GrantRequest) {
	t.Helper()
	if req.Method == pb.Method_METHOD_UNSPECIFIED {
		req.Method = pb.Method_METHOD_CHECKBOX
	}
	if len(req.Purposes) == 0 {
		req.Purposes = []string{purpose}
	}
	if _, err := c.Grant(testCtx(t, 30*time.Second), req); err != nil {
		t.Fatalf("Grant(%s): %v", req.GetContact(), err)
	}
}

// letterFields is what a delivered message should say.
type letterFields struct {
	to, firstName, plan string
}

// listUnsubscribe is the List-Unsubscribe header of every message: the
// one-click link on consentd's HTTP listener, then the mailto address.
var listUnsubscribe = regexp.MustCompile(`^<(http://[^>]+/unsubscribe/[A-Za-z0-9_-]+)>, <mailto:unsubscribe@example\.com>$`)

// checkMessage checks one delivered message, envelope, headers and body,
// as a mail client would read it, and returns its unsubscribe link.
func checkMessage(t *testing.T, d delivered, want letterFields, httpAddr string) (link, messageID string) {
	t.Helper()
	if d.from != "news@example.com" || !slices.Equal(d.to, []string{want.to}) {
		t.Errorf("envelope MAIL FROM %q, RCPT TO %q; want news@example.com, [%s]", d.from, d.to, want.to)
	}
	msg, err := mail.ReadMessage(bytes.NewReader(d.data))
	if err != nil {
		t.Fatalf("message to %s is not RFC 5322: %v\n%s", want.to, err, d.data)
	}
	h := msg.Header
	if a, err := mail.ParseAddress(h.Get("From")); err != nil || a.Name != "Example News" || a.Address != "news@example.com" {
		t.Errorf("From: %q (%v)", h.Get("From"), err)
	}
	if got := h.Get("To"); got != want.to {
		t.Errorf("To: %q, want %q", got, want.to)
	}
	subject, err := new(mime.WordDecoder).DecodeHeader(h.Get("Subject"))
	if want := "Spring news for " + want.firstName + " ✿"; err != nil || subject != want {
		t.Errorf("Subject: %q decodes to %q (%v), want %q", h.Get("Subject"), subject, err, want)
	}
	if date, err := h.Date(); err != nil || time.Since(date) > time.Minute || time.Until(date) > time.Second {
		t.Errorf("Date: %q (%v), want about now", h.Get("Date"), err)
	}
	messageID = h.Get("Message-ID")
	if !regexp.MustCompile(`^<[0-9a-f]{32}@example\.com>$`).MatchString(messageID) {
		t.Errorf("Message-ID: %q", messageID)
	}
	if got := h.Get("MIME-Version"); got != "1.0" {
		t.Errorf("MIME-Version: %q", got)
	}
	if mt, params, err := mime.ParseMediaType(h.Get("Content-Type")); err != nil || mt != "text/plain" || params["charset"] != "utf-8" {
		t.Errorf("Content-Type: %q", h.Get("Content-Type"))
	}
	m := listUnsubscribe.FindStringSubmatch(h.Get("List-Unsubscribe"))
	if m == nil || !strings.HasPrefix(m[1], "http://"+httpAddr+"/unsubscribe/") {
		t.Fatalf("List-Unsubscribe: %q, want <http://%s/unsubscribe/TOKEN>, <mailto:%s>", h.Get("List-Unsubscribe"), httpAddr, mailto)
	}
	link = m[1]
	if got := h.Get("List-Unsubscribe-Post"); got != "List-Unsubscribe=One-Click" {
		t.Errorf("List-Unsubscribe-Post: %q", got)
	}
	// ASCII goes as it is; anything else quoted-printable.
	var body []byte
	switch cte, ascii := h.Get("Content-Transfer-Encoding"), isASCII(want.firstName+want.plan); {
	case ascii && cte == "7bit":
		body, err = io.ReadAll(msg.Body)
	case !ascii && cte == "quoted-printable":
		body, err = io.ReadAll(quotedprintable.NewReader(msg.Body))
	default:
		t.Fatalf("Content-Transfer-Encoding: %q for a body in ASCII: %v", cte, ascii)
	}
	if err != nil {
		t.Fatalf("body: %v", err)
	}
	if diff := cmp.Diff(newsBody(want.firstName, want.plan, link), string(body)); diff != "" {
		t.Errorf("body to %s (-want +got):\n%s", want.to, diff)
	}
	return link, messageID
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// oneClick unsubscribes as a mail client does when the person presses its
// Unsubscribe button (RFC 8058): a POST to the link with the one-click body.
func oneClick(t *testing.T, link string) {
	t.Helper()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	if code, page := daemontest.Click(t, &http.Client{Transport: tr}, http.MethodPost, link); code != http.StatusOK {
		t.Fatalf("POST %s = %d\n%s", link, code, page)
	}
}

// campaignRecipients is the campaign's list: two columns of fields besides
// the address, a duplicate, and contacts in every state.
const campaignRecipients = `email,first_name,plan
ada@example.com,Ada,pro
bo@example.com,Bo,free
cy@example.com,Cy,free
dee@example.com,Dee,pro
Ada@Example.com,Ada,pro
eve@example.com,Éve,pro
fay@example.com,Fay,free
gus@example.com,Gus,free
`

// grantCampaign records the consents campaignRecipients meets: ada, bo and
// eve may be mailed; cy never said yes; dee withdrew; fay's yes came from a
// list broker; gus agreed to sales calls only.
func grantCampaign(t *testing.T, c *client.Client) {
	t.Helper()
	for _, who := range []string{"ada@example.com", "bo@example.com", "eve@example.com", "dee@example.com"} {
		grant(t, c, &pb.GrantRequest{Contact: who, NoticeVersion: "2026-05", EvidenceRef: "form:newsletter"})
	}
	if _, err := c.Withdraw(testCtx(t, 30*time.Second), &pb.WithdrawRequest{Contact: "dee@example.com", Purposes: []string{purpose}}); err != nil {
		t.Fatal(err)
	}
	grant(t, c, &pb.GrantRequest{Contact: "fay@example.com", Source: pb.Source_SOURCE_THIRD_PARTY, ThirdParty: "list-broker"})
	grant(t, c, &pb.GrantRequest{Contact: "gus@example.com", Purposes: []string{"sales_outreach"}, Method: pb.Method_METHOD_VERBAL})
}

// sentLines parses the command's stdout: "line N: ADDRESS: sent <ID>".
func sentLines(t *testing.T, stdout string) (to, ids []string) {
	t.Helper()
	for _, l := range strings.Split(strings.TrimSuffix(stdout, "\n"), "\n") {
		m := regexp.MustCompile(`^line \d+: (\S+): sent (<\S+>)$`).FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("stdout line %q, want \"line N: ADDRESS: sent <MESSAGE-ID>\"", l)
		}
		to, ids = append(to, m[1]), append(ids, m[2])
	}
	return to, ids
}

// campaignStory runs a campaign against d: only the recipients consentd
// allows get a message, each with working one-click unsubscribe headers; a
// click on one of them over HTTP withdraws that contact, and the next
// campaign skips it while the others still get mail.
func campaignStory(t *testing.T, d *daemontest.Daemon) {
	t.Helper()
	grantCampaign(t, daemontest.Client(t, d.Addr))
	srv := startSMTP(t, smtpOptions{})
	tmpl := writeTemplate(t, newsTemplate)

	r := runGate(testCtx(t, time.Minute), campaignRecipients, gateArgs(d, srv.addr, tmpl)...)
	wantStderr := `emailgate: line 4: cy@example.com: skipped: no_consent
emailgate: line 5: dee@example.com: skipped: withdrawn
emailgate: line 6: Ada@Example.com: skipped: duplicate of line 2
emailgate: line 8: fay@example.com: skipped: third_party_unconfirmed
emailgate: line 9: gus@example.com: skipped: no_consent
emailgate: 8 recipients: 3 sent, 5 skipped (no_consent 2, withdrawn 1, third_party_unconfirmed 1, duplicate 1), 0 not verified, 0 failed
`
	if r.code != 0 || r.stderr != wantStderr {
		t.Fatalf("first campaign: exit %d, stderr:\n%s\nwant exit 0 and:\n%s", r.code, r.stderr, wantStderr)
	}
	msgs := srv.messages()
	want := []letterFields{{"ada@example.com", "Ada", "pro"}, {"bo@example.com", "Bo", "free"}, {"eve@example.com", "Éve", "pro"}}
	if len(msgs) != len(want) {
		t.Fatalf("%d messages delivered, want %d (to ada, bo, eve)", len(msgs), len(want))
	}
	links := map[string]string{}
	var ids []string
	for i, w := range want {
		link, id := checkMessage(t, msgs[i], w, d.HTTP)
		links[w.to] = link
		ids = append(ids, id)
	}
	to, logged := sentLines(t, r.stdout)
	if diff := cmp.Diff([]string{"ada@example.com", "bo@example.com", "eve@example.com"}, to); diff != "" {
		t.Errorf("stdout's sent lines (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(ids, logged); diff != "" {
		t.Errorf("Message-IDs on stdout (-delivered +logged):\n%s", diff)
	}
	if len(slices.Compact(slices.Sorted(slices.Values(ids)))) != len(ids) {
		t.Errorf("Message-IDs repeat: %v", ids)
	}
	if links["ada@example.com"] == links["bo@example.com"] {
		t.Error("ada and bo got the same unsubscribe link")
	}
	if srv.connections() != 1 {
		t.Errorf("%d SMTP connections for one campaign, want 1 (kept open across messages)", srv.connections())
	}

	// Bo presses the Unsubscribe button of the delivered message.
	oneClick(t, links["bo@example.com"])

	r = runGate(testCtx(t, time.Minute), campaignRecipients, gateArgs(d, srv.addr, tmpl)...)
	wantStderr = `emailgate: line 3: bo@example.com: skipped: withdrawn
emailgate: line 4: cy@example.com: skipped: no_consent
emailgate: line 5: dee@example.com: skipped: withdrawn
emailgate: line 6: Ada@Example.com: skipped: duplicate of line 2
emailgate: line 8: fay@example.com: skipped: third_party_unconfirmed
emailgate: line 9: gus@example.com: skipped: no_consent
emailgate: 8 recipients: 2 sent, 6 skipped (no_consent 2, withdrawn 2, third_party_unconfirmed 1, duplicate 1), 0 not verified, 0 failed
`
	if r.code != 0 || r.stderr != wantStderr {
		t.Fatalf("second campaign: exit %d, stderr:\n%s\nwant exit 0 and:\n%s", r.code, r.stderr, wantStderr)
	}
	again := srv.messages()[len(msgs):]
	if len(again) != 2 {
		t.Fatalf("second campaign delivered %d messages, want 2 (to ada and eve)", len(again))
	}
	checkMessage(t, again[0], want[0], d.HTTP)
	checkMessage(t, again[1], want[2], d.HTTP)
}

// TestCampaign runs the campaign story on consentd's embedded store.
func TestCampaign(t *testing.T) {
	campaignStory(t, daemontest.Start(t, "--http", "127.0.0.1:0", "--data-dir", t.TempDir()))
}

// TestCampaignRedis runs it on a consentd whose store is a real
// redis-server.
func TestCampaignRedis(t *testing.T) {
	srv := redistest.Start(t, redisproc.Options{})
	secret := filepath.Join(t.TempDir(), "consentd.secret")
	if err := os.WriteFile(secret, []byte("the emailgate test's secret, 0123456789"), 0o600); err != nil {
		t.Fatal(err)
	}
	campaignStory(t, daemontest.Start(t, "--http", "127.0.0.1:0", "--redis", "redis://"+srv.Addr()+"/0", "--redis-init", "--secret-file", secret))
}

// TestSMTPRefusals: a recipient the SMTP server refuses is counted as
// failed, and the campaign carries on over the same connection (RSET); a
// server that drops each connection after a message is reconnected to.
func TestSMTPRefusals(t *testing.T) {
	d := daemontest.Start(t, "--http", "127.0.0.1:0", "--data-dir", t.TempDir())
	c := daemontest.Client(t, d.Addr)
	for _, who := range []string{"ada@example.com", "bo@example.com", "eve@example.com"} {
		grant(t, c, &pb.GrantRequest{Contact: who})
	}
	tmpl := writeTemplate(t, newsTemplate)
	const list = "email,first_name,plan\nada@example.com,Ada,pro\nbo@example.com,Bo,free\neve@example.com,Eve,pro\n"

	t.Run("recipient refused", func(t *testing.T) {
		srv := startSMTP(t, smtpOptions{refuse: map[string]string{"bo@example.com": "550 5.1.1 <bo@example.com>: no such user"}})
		r := runGate(testCtx(t, time.Minute), list, gateArgs(d, srv.addr, tmpl)...)
		want := `emailgate: line 3: bo@example.com: failed: the SMTP server refused RCPT TO: 550 5.1.1 <bo@example.com>: no such user
emailgate: 3 recipients: 2 sent, 0 skipped, 0 not verified, 1 failed
`
		if r.code != 1 || r.stderr != want {
			t.Errorf("exit %d, stderr:\n%s\nwant exit 1 and:\n%s", r.code, r.stderr, want)
		}
		var got []string
		for _, m := range srv.messages() {
			got = append(got, m.to...)
		}
		if diff := cmp.Diff([]string{"ada@example.com", "eve@example.com"}, got); diff != "" {
			t.Errorf("delivered to (-want +got):\n%s", diff)
		}
		if n := srv.connections(); n != 1 {
			t.Errorf("%d connections, want 1: a refused recipient does not need a new one", n)
		}
	})
	t.Run("connection dropped after each message", func(t *testing.T) {
		srv := startSMTP(t, smtpOptions{closeAfter: 1})
		r := runGate(testCtx(t, time.Minute), list, gateArgs(d, srv.addr, tmpl)...)
		if r.code != 0 || !strings.HasSuffix(r.stderr, "emailgate: 3 recipients: 3 sent, 0 skipped, 0 not verified, 0 failed\n") {
			t.Errorf("exit %d, stderr:\n%s", r.code, r.stderr)
		}
		if n, c := len(srv.messages()), srv.connections(); n != 3 || c != 3 {
			t.Errorf("%d messages over %d connections, want 3 over 3", n, c)
		}
	})
	t.Run("server unreachable", func(t *testing.T) {
		addr := daemontest.DeadAddr(t)
		r := runGate(testCtx(t, time.Minute), list, gateArgs(d, addr, tmpl)...)
		prefix := "emailgate: cannot use the SMTP server at " + addr + ": SMTP connect: dial tcp " + addr + ": connect: connection refused; nothing was sent\n"
		if r.code != 1 || r.stderr != prefix || r.stdout != "" {
			t.Errorf("exit %d, stdout %q, stderr %q; want exit 1 and %q", r.code, r.stdout, r.stderr, prefix)
		}
	})
}

// TestConsentdGoesAway: consentd dies after the second message. Nothing is
// sent to a recipient that could not be checked, and after five of them in
// a row the campaign stops instead of trying the rest.
func TestConsentdGoesAway(t *testing.T) {
	d := daemontest.Start(t, "--http", "127.0.0.1:0", "--data-dir", t.TempDir())
	c := daemontest.Client(t, d.Addr)
	list := "email\n"
	for i := range 10 {
		who := fmt.Sprintf("r%d@example.com", i)
		grant(t, c, &pb.GrantRequest{Contact: who})
		list += who + "\n"
	}
	srv := startSMTP(t, smtpOptions{accepted: func(n int, _ delivered) {
		if n == 2 {
			d.Kill() // before the server acknowledges the second message
		}
	}})
	tmpl := writeTemplate(t, "Subject: hello\n\nHello,\n{{.UnsubscribeURL}}\n")
	r := runGate(testCtx(t, 2*time.Minute), list, gateArgs(d, srv.addr, tmpl)...)
	if n := len(srv.messages()); n != 2 {
		t.Errorf("%d messages delivered, want the 2 sent before consentd died", n)
	}
	lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
	for i, l := range lines[:len(lines)-2] {
		if want := fmt.Sprintf("emailgate: line %d: r%d@example.com: not verified, not sent: consentd: ", i+4, i+2); !strings.HasPrefix(l, want) {
			t.Errorf("stderr line %d = %q, want it to start %q", i+1, l, want)
		}
	}
	wantEnd := []string{
		"emailgate: stopped after 5 recipients in a row could not be verified or sent (is consentd or the SMTP server failing?); 3 recipients not attempted",
		"emailgate: 10 recipients: 2 sent, 0 skipped, 5 not verified, 0 failed, 3 not attempted",
	}
	if r.code != 1 || len(lines) != 7 || !slices.Equal(lines[5:], wantEnd) {
		t.Errorf("exit %d, stderr:\n%s\nwant exit 1, five lines not verified, then:\n%s", r.code, r.stderr, strings.Join(wantEnd, "\n"))
	}
}

// TestConsentdUnreachable: with no consentd at the address, nothing is
// sent and the run fails at once with one line naming the address.
func TestConsentdUnreachable(t *testing.T) {
	addr := daemontest.DeadAddr(t)
	srv := startSMTP(t, smtpOptions{})
	tmpl := writeTemplate(t, newsTemplate)
	flags := []string{"--purpose", purpose, "--smtp", srv.addr, "--from", from, "--template", tmpl, "--unsubscribe-base", "http://127.0.0.1:8080"}
	for _, tt := range []struct {
		name   string
		args   []string
		getenv func(string) string
	}{
		{"--addr", append([]string{"--addr", addr}, flags...), noEnv},
		{"CONSENTD_ADDR", flags, func(k string) string {
			if k == "CONSENTD_ADDR" {
				return addr
			}
			return ""
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			start := time.Now()
			code := run(testCtx(t, 30*time.Second), tt.args, tt.getenv, strings.NewReader(campaignRecipients), &stdout, &stderr)
			msg := stderr.String()
			if code != 1 || stdout.Len() != 0 {
				t.Errorf("exit %d, stdout %q; want exit 1 and nothing", code, stdout.String())
			}
			if !strings.HasPrefix(msg, "emailgate: cannot use consentd at "+addr+": ") || !strings.Contains(msg, "connection refused") ||
				!strings.HasSuffix(msg, "; nothing was sent\n") || strings.Count(msg, "\n") != 1 {
				t.Errorf("stderr = %q, want one line naming %s, the refused connection, and that nothing was sent", msg, addr)
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("took %v to give up on a closed port", took)
			}
		})
	}
	if n := srv.connections(); n != 0 {
		t.Errorf("the SMTP server got %d connections", n)
	}
}

// TestBadInput: a bad list or template is reported, with its line, before
// anything is sent, although consentd and the SMTP server are ready and
// the first recipient may be mailed.
func TestBadInput(t *testing.T) {
	d := daemontest.Start(t, "--http", "127.0.0.1:0", "--data-dir", t.TempDir())
	grant(t, daemontest.Client(t, d.Addr), &pb.GrantRequest{Contact: "ada@example.com"})
	srv := startSMTP(t, smtpOptions{})
	const good = "email,first_name,plan\nada@example.com,Ada,pro\nbo@example.com,Bo,free\n"
	tests := []struct {
		name      string
		csv, tmpl string
		purpose   string
		want      string // stderr; "TEMPLATE" stands for the template's path
	}{
		{"no email column", "name,mail\nAda,ada@example.com\n", newsTemplate, "",
			"emailgate: the header row has no email column (columns: name, mail); name the column of addresses email"},
		{"bare quote", "email,first_name,plan\nada@example.com,Ada,pro\nbo@example.com,B\"o,free\n", newsTemplate, "",
			`emailgate: malformed CSV on stdin: parse error on line 3, column 17: bare " in non-quoted-field`},
		{"unterminated quote", "email,first_name,plan\nada@example.com,Ada,pro\n\"bo@example.com,Bo,free\n", newsTemplate, "",
			`emailgate: malformed CSV on stdin: parse error on line 3, column 25: extraneous or missing " in quoted-field`},
		{"short row", "email,first_name,plan\nada@example.com,Ada,pro\n\nbo@example.com,Bo\n", newsTemplate, "",
			"emailgate: malformed CSV on stdin: line 4 has 2 cells, the header has 3"},
		{"empty input", "", newsTemplate, "",
			"emailgate: stdin is empty: want CSV with a header row naming an email column"},
		{"not an address", "email,first_name,plan\nada@example.com,Ada,pro\nbo at example.com,Bo,free\n", newsTemplate, "",
			`emailgate: line 3: "bo at example.com" is not a plain email address; want one like ada@example.com`},
		{"address with a name", "email,first_name,plan\nBo <bo@example.com>,Bo,free\n", newsTemplate, "",
			`emailgate: line 2: "Bo <bo@example.com>" is not a plain email address; want one like ada@example.com`},
		{"empty address", "email,first_name,plan\nada@example.com,Ada,pro\n ,Bo,free\n", newsTemplate, "",
			"emailgate: line 3: the email cell is empty"},
		{"two email columns", "Email,first_name,EMAIL\n", newsTemplate, "",
			"emailgate: the header names an email column twice (columns 1 and 3)"},
		{"repeated column", "email,plan,plan\n", newsTemplate, "",
			`emailgate: the header names column "plan" twice (columns 2 and 3)`},
		{"column named like the link", "email,UnsubscribeURL\n", newsTemplate, "",
			"emailgate: the header names a column UnsubscribeURL: that field is the message's unsubscribe link; rename the column"},
		{"template syntax", good, "Subject: hi\n\nHello {{.first_name}\n{{.UnsubscribeURL}}\n", "",
			`emailgate: template: news.txt:3: bad character U+007D '}'`},
		{"unknown field", good, "Subject: hi {{.first_name}}\n\nHello {{.nickname}},\n{{.UnsubscribeURL}}\n", "",
			`emailgate: line 2: template: news.txt:3:8: executing "news.txt" at <.nickname>: map has no entry for key "nickname"; nothing was sent`},
		{"unknown field on a later row", good, "Subject: hi\n\n{{if eq .plan \"free\"}}{{.nickname}}{{end}}\n{{.UnsubscribeURL}}\n", "",
			`emailgate: line 3: template: news.txt:3:24: executing "news.txt" at <.nickname>: map has no entry for key "nickname"; nothing was sent`},
		{"unknown field in the subject", good, "Subject: hi {{.nick}}\n\n{{.UnsubscribeURL}}\n", "",
			`emailgate: line 2: template: news.txt:1:14: executing "news.txt" at <.nick>: map has no entry for key "nick"; nothing was sent`},
		{"no subject", good, "Hello {{.first_name}}\n\n{{.UnsubscribeURL}}\n", "",
			`emailgate: template: news.txt:1: want the subject first, a line "Subject: ...", got "Hello {{.first_name}}"`},
		{"no blank line", good, "Subject: hi\nHello\n{{.UnsubscribeURL}}\n", "",
			`emailgate: template: news.txt:2: want a blank line after the subject, got "Hello"`},
		{"no unsubscribe link", good, "Subject: hi\n\nHello {{.first_name}}\n", "",
			"emailgate: line 2: the body does not show the unsubscribe link: put {{.UnsubscribeURL}} in it; nothing was sent"},
		{"empty subject", "email,tag\nada@example.com,\n", "Subject: {{.tag}}\n\n{{.UnsubscribeURL}}\n", "",
			"emailgate: line 2: the subject is empty; nothing was sent"},
		{"a field breaks the subject", "email,first_name,plan\nada@example.com,\"Ada\nBcc: all@example.com\",pro\n", newsTemplate, "",
			`emailgate: line 2: the subject has a line break (from a field?): "Spring news for Ada\nBcc: all@example.com ✿"; nothing was sent`},
		{"unknown purpose", good, newsTemplate, "email",
			`emailgate: consentd at ADDR knows no purpose "email" (known: email_marketing, sales_outreach, market_research, ad_retargeting); nothing was sent`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmpl := writeTemplate(t, tt.tmpl)
			args := gateArgs(d, srv.addr, tmpl)
			if tt.purpose != "" {
				args = append(args, "--purpose", tt.purpose)
			}
			r := runGate(testCtx(t, time.Minute), tt.csv, args...)
			want := strings.ReplaceAll(tt.want, "ADDR", d.Addr) + "\n"
			if r.code != 1 || r.stderr != want || r.stdout != "" {
				t.Errorf("exit %d, stdout %q, stderr:\n%q\nwant exit 1 and:\n%q", r.code, r.stdout, r.stderr, want)
			}
		})
	}
	t.Run("missing template file", func(t *testing.T) {
		missing := filepath.Join(t.TempDir(), "nope.txt")
		r := runGate(testCtx(t, time.Minute), good, gateArgs(d, srv.addr, missing)...)
		if want := "emailgate: template: open " + missing + ": no such file or directory\n"; r.code != 1 || r.stderr != want {
			t.Errorf("exit %d, stderr %q; want exit 1 and %q", r.code, r.stderr, want)
		}
	})
	if n := srv.connections(); n != 0 {
		t.Errorf("the SMTP server got %d connections from runs with bad input", n)
	}
}

// TestDryRun: --dry-run asks consentd as usual and writes the messages it
// would send as an mbox on stdout, without touching SMTP; its links work.
func TestDryRun(t *testing.T) {
	d := daemontest.Start(t, "--http", "127.0.0.1:0", "--data-dir", t.TempDir())
	c := daemontest.Client(t, d.Addr)
	grantCampaign(t, c)
	srv := startSMTP(t, smtpOptions{})
	tmpl := writeTemplate(t, newsTemplate)
	for _, args := range [][]string{
		gateArgs(d, srv.addr, tmpl, "--dry-run"),
		{"--addr", d.Addr, "--purpose", purpose, "--from", from, "--template", tmpl, "--unsubscribe-base", "http://" + d.HTTP, "--mailto", mailto, "--dry-run"},
	} {
		r := runGate(testCtx(t, time.Minute), campaignRecipients, args...)
		if r.code != 0 || !strings.HasSuffix(r.stderr, "emailgate: 8 recipients: 3 would be sent (dry run), 5 skipped (no_consent 2, withdrawn 1, third_party_unconfirmed 1, duplicate 1), 0 not verified, 0 failed\n") {
			t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
		}
		msgs := parseMbox(t, r.stdout)
		want := []letterFields{{"ada@example.com", "Ada", "pro"}, {"bo@example.com", "Bo", "free"}, {"eve@example.com", "Éve", "pro"}}
		if len(msgs) != len(want) {
			t.Fatalf("%d messages in the mbox, want %d:\n%s", len(msgs), len(want), r.stdout)
		}
		for i, w := range want {
			checkMessage(t, msgs[i], w, d.HTTP)
		}
	}
	if n := srv.connections(); n != 0 {
		t.Errorf("a dry run made %d SMTP connections", n)
	}
	if !strings.Contains(string(parseMboxRaw(t, runGate(testCtx(t, time.Minute), campaignRecipients, gateArgs(d, srv.addr, tmpl, "--dry-run")...).stdout)), "\n>From the team at Example.\n") {
		t.Error(`the mbox does not escape the body's "From " line`)
	}
}

// parseMboxRaw checks that out is an mboxrd file and returns it.
func parseMboxRaw(t *testing.T, out string) []byte {
	t.Helper()
	if !strings.HasPrefix(out, "From news@example.com ") || strings.Contains(out, "\r") {
		t.Fatalf("not an mbox of LF lines:\n%s", out)
	}
	return []byte(out)
}

// parseMbox splits an mboxrd file into messages (undoing the ">From "
// escapes, with CRLF line endings as on the wire), each from its "From "
// line's sender to the person it is addressed to.
func parseMbox(t *testing.T, out string) []delivered {
	t.Helper()
	parseMboxRaw(t, out)
	var msgs []delivered
	parts := strings.Split("\n"+out, "\nFrom ")[1:]
	for i, part := range parts {
		// Each message ends with a blank line; the split took the last
		// message's line break with the "From " of the next.
		if i == len(parts)-1 {
			part = strings.TrimSuffix(part, "\n")
		}
		envelope, text, _ := strings.Cut(part, "\n")
		var b strings.Builder
		for _, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
			if strings.HasPrefix(strings.TrimLeft(line, ">"), "From ") {
				line = line[1:]
			}
			b.WriteString(line + "\r\n")
		}
		msg, err := mail.ReadMessage(strings.NewReader(b.String()))
		if err != nil {
			t.Fatalf("mbox message: %v", err)
		}
		sender, _, _ := strings.Cut(envelope, " ")
		msgs = append(msgs, delivered{from: sender, to: []string{msg.Header.Get("To")}, data: []byte(b.String())})
	}
	return msgs
}

// TestInterrupt: an interrupt lets the message in flight finish, then
// stops; the rest are not attempted and the run fails.
func TestInterrupt(t *testing.T) {
	d := daemontest.Start(t, "--http", "127.0.0.1:0", "--data-dir", t.TempDir())
	c := daemontest.Client(t, d.Addr)
	for _, who := range []string{"ada@example.com", "bo@example.com", "eve@example.com"} {
		grant(t, c, &pb.GrantRequest{Contact: who})
	}
	ctx, cancel := context.WithCancel(testCtx(t, time.Minute))
	srv := startSMTP(t, smtpOptions{accepted: func(int, delivered) { cancel() }})
	r := runGate(ctx, "email,first_name,plan\nada@example.com,Ada,pro\nbo@example.com,Bo,free\neve@example.com,Eve,pro\n", gateArgs(d, srv.addr, writeTemplate(t, newsTemplate))...)
	want := "emailgate: interrupted; 2 recipients not attempted\nemailgate: 3 recipients: 1 sent, 0 skipped, 0 not verified, 0 failed, 2 not attempted\n"
	if r.code != 1 || r.stderr != want || len(srv.messages()) != 1 {
		t.Errorf("exit %d, %d delivered, stderr:\n%s\nwant exit 1, 1 delivered and:\n%s", r.code, len(srv.messages()), r.stderr, want)
	}
	if to, _ := sentLines(t, r.stdout); !slices.Equal(to, []string{"ada@example.com"}) {
		t.Errorf("stdout %q, want the one message sent", r.stdout)
	}
}

func TestCommandLine(t *testing.T) {
	base := []string{"--purpose", purpose, "--smtp", "127.0.0.1:25", "--from", from, "--template", "news.txt", "--unsubscribe-base", "https://mail.example.com"}
	without := func(flag string) []string {
		i := slices.Index(base, flag)
		return slices.Delete(slices.Clone(base), i, i+2)
	}
	with := func(more ...string) []string { return append(slices.Clone(base), more...) }
	tests := []struct {
		name string
		args []string
		code int
		says string
	}{
		{"help", []string{"--help"}, 0, "--unsubscribe-base"},
		{"no purpose", without("--purpose"), 2, "emailgate: --purpose is required, e.g. --purpose email_marketing\n"},
		{"no from", without("--from"), 2, "emailgate: --from is required, e.g. --from news@example.com\n"},
		{"no template", without("--template"), 2, "emailgate: --template is required, e.g. --template news.txt\n"},
		{"no base", without("--unsubscribe-base"), 2, "emailgate: --unsubscribe-base is required, e.g. --unsubscribe-base https://mail.example.com\n"},
		{"no smtp", without("--smtp"), 2, "emailgate: --smtp is required, e.g. --smtp 127.0.0.1:25 (or --dry-run to send nothing)\n"},
		{"smtp without port", with("--smtp", "mail.example.com"), 2, `emailgate: --smtp: want host:port, like 127.0.0.1:25, got "mail.example.com"` + "\n"},
		{"bad from", with("--from", "news at example.com"), 2, `emailgate: --from: "news at example.com" is not an address; want one like news@example.com or "Example News <news@example.com>"` + "\n"},
		{"base not http", with("--unsubscribe-base", "ftp://mail.example.com"), 2, `emailgate: --unsubscribe-base: want an http(s) URL without user, query or fragment, like https://mail.example.com, got "ftp://mail.example.com"` + "\n"},
		{"base with query", with("--unsubscribe-base", "https://mail.example.com/?x=1"), 2, "--unsubscribe-base: want an http(s) URL"},
		{"bad mailto", with("--mailto", "Unsub <u@example.com>"), 2, `emailgate: --mailto: want a bare address, like unsubscribe@example.com, got "Unsub <u@example.com>"` + "\n"},
		{"empty addr", with("--addr", ""), 2, "emailgate: --addr must not be empty\n"},
		{"unknown flag", with("--nope"), 2, "flag provided but not defined: -nope"},
		{"stray argument", with("recipients.csv"), 2, "emailgate: unexpected arguments: recipients.csv (the recipients come on stdin)\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runGate(testCtx(t, 10*time.Second), "", tt.args...)
			if r.code != tt.code || !strings.Contains(r.stderr, tt.says) || r.stdout != "" {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d mentioning %q", r.code, r.stdout, r.stderr, tt.code, tt.says)
			}
		})
	}
}

// TestPlainHTTPLink: an http link on another machine is sent, with a
// warning, since mail providers ignore it.
func TestPlainHTTPLink(t *testing.T) {
	for base, warns := range map[string]bool{
		"http://mail.example.com":  true,
		"https://mail.example.com": false,
		"http://127.0.0.1:8080":    false,
		"http://[::1]:8080":        false,
		"http://localhost:8080":    false,
	} {
		r := runGate(testCtx(t, 10*time.Second), "", "--purpose", purpose, "--dry-run", "--from", from,
			"--template", filepath.Join(t.TempDir(), "none.txt"), "--unsubscribe-base", base)
		warning := "emailgate: warning: --unsubscribe-base " + base + " is not https: mail clients offer one-click unsubscribe only for https links (RFC 8058)\n"
		if got := strings.HasPrefix(r.stderr, warning); got != warns || r.code != 1 {
			t.Errorf("%s: exit %d, stderr %q; want a warning: %v", base, r.code, r.stderr, warns)
		}
	}
}

// TestCompose checks messages that need care on the wire: long lines,
// text beyond ASCII, long subjects; every line stays within RFC 5322's
// limits and a reader gets the text back exactly.
func TestCompose(t *testing.T) {
	l, err := loadLetter(writeTemplate(t, "Subject: {{.subject}}\n\n{{.text}}\n{{.UnsubscribeURL}}"))
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := mail.ParseAddress(from)
	c := &composer{letter: l, from: addr, mailto: mailto}
	const link = "https://mail.example.com/unsubscribe/TOKEN"
	long := strings.Repeat("word ", 40)
	tests := []struct {
		name, subject, text string
		encoding            string
	}{
		{"ascii", "Spring news", "Hello,\r\nwindows line ends.", "7bit"},
		{"line of 998", "Spring news", strings.Repeat("x", 998), "7bit"},
		{"line of 999", "Spring news", strings.Repeat("x", 999), "quoted-printable"},
		{"not ascii", "Frühling ✿", "Grüße, Zoë", "quoted-printable"},
		{"control character", "Spring news", "a\x1bb", "quoted-printable"},
		{"long ascii subject", long, "Hello", "7bit"},
		{"long subject beyond ascii", strings.Repeat("Grüße ", 30), "Hello", "7bit"},
		{"dots", "Spring news", ".\n..\n.x", "7bit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := c.compose(recipient{line: 2, email: "ada@example.com", fields: map[string]string{"subject": tt.subject, "text": tt.text}}, link, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			for line := range strings.Lines(string(m.data)) {
				if !strings.HasSuffix(line, "\r\n") || strings.ContainsAny(strings.TrimSuffix(line, "\r\n"), "\r\n") || len(line) > 1000 {
					t.Errorf("wire line %q: want CRLF-terminated, at most 1000 bytes", line)
				}
			}
			msg, err := mail.ReadMessage(bytes.NewReader(m.data))
			if err != nil {
				t.Fatal(err)
			}
			// Headers are folded at spaces to lines of 78 characters; only a
			// word too long for one runs over.
			for _, raw := range strings.Split(string(m.data[:bytes.Index(m.data, []byte("\r\n\r\n"))]), "\r\n") {
				rest := strings.TrimPrefix(raw, " ")
				if rest == raw {
					_, rest, _ = strings.Cut(raw, ": ")
				}
				if len(raw) > 78 && strings.Contains(rest, " ") {
					t.Errorf("header line of %d characters not folded: %q", len(raw), raw)
				}
			}
			subject, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
			if err != nil || subject != strings.TrimSpace(tt.subject) {
				t.Errorf("Subject %q decodes to %q (%v), want %q", msg.Header.Get("Subject"), subject, err, tt.subject)
			}
			if got := msg.Header.Get("Content-Transfer-Encoding"); got != tt.encoding {
				t.Errorf("Content-Transfer-Encoding %q, want %q", got, tt.encoding)
			}
			var r io.Reader = msg.Body
			if tt.encoding == "quoted-printable" {
				r = quotedprintable.NewReader(r)
			}
			body, err := io.ReadAll(r)
			if err != nil {
				t.Fatal(err)
			}
			want := strings.ReplaceAll(strings.ReplaceAll(tt.text, "\r\n", "\n")+"\n"+link+"\n", "\n", "\r\n")
			if string(body) != want {
				t.Errorf("body %q, want %q", body, want)
			}
		})
	}
}
