package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/consentd/consentd/consent"
	"github.com/consentd/consentd/internal/daemontest"
	"github.com/consentd/consentd/internal/redisproc"
	"github.com/consentd/consentd/internal/redistest"
	pb "github.com/consentd/consentd/proto/consent/v1"
)

// dates are the capture and end dates the tests record, relative to today so
// the purposes' windows treat them the same every day. Each has a
// placeholder as wide as the time it stands for, so want tables stay aligned.
type dates map[string]string // placeholder → YYYY-MM-DD

func newDates() dates {
	d := dates{}
	for _, m := range []int{-14, -3, -1, 11} {
		d[placeholder(m)] = time.Now().UTC().AddDate(0, m, 0).Format(time.DateOnly)
	}
	return d
}

// placeholder names the date m months from today: "MONTHS-1____________".
func placeholder(m int) string {
	p := "MONTHS"
	if m > 0 {
		p += "+"
	}
	p += strconv.Itoa(m)
	return p + strings.Repeat("_", 20-len(p))
}

// arg is the date m months from today, as a flag value.
func (d dates) arg(m int) string { return d[placeholder(m)] }

// expand puts the dates' times into a want text.
func (d dates) expand(s string) string {
	for p, day := range d {
		s = strings.ReplaceAll(s, p, day+"T00:00:00Z")
	}
	return s
}

// TestLifecycle runs every command through a contact's life, on each store:
// grant with full proof, every reason a check can give, show, withdraw,
// history, erase. Outputs are compared whole; times consentd took from its
// clock read as NOW.
func TestLifecycle(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			addr := b.start(t)
			d := newDates()
			steps := []struct {
				args   []string
				env    map[string]string
				code   int
				want   string
				stderr string
			}{
				{
					args: []string{"grant", "ada@example.com", "email_marketing", "sales_outreach", "--method", "checkbox",
						"--notice", "2026-05", "--evidence", "form:signup-7", "--captured-at", d.arg(-1)},
					want: "granted email_marketing, sales_outreach for ada@example.com (checkbox, first party); consistency token 0/1\n",
				},
				{
					args: []string{"check", "ada@example.com", "email_marketing"},
					want: "allow (granted): a specific, first-party yes is on record, within the purpose's window\n",
				},
				{
					args: []string{"check", " ADA@Example.com", "market_research"}, code: 1,
					want: "deny (no_consent): no yes is on record (an unknown contact looks the same)\n",
				},
				{
					// Flags before, between and after the positional arguments.
					args: []string{"grant", "--method", "verbal", "ada@example.com", "--third-party", "Acme Lists",
						"ad_retargeting", "--evidence=call:42"},
					want: "granted ad_retargeting for ada@example.com (verbal, third party (Acme Lists)); consistency token 0/2\n",
				},
				{
					args: []string{"check", "ada@example.com", "ad_retargeting"}, code: 1,
					want: "deny (third_party_unconfirmed): the yes came from a third party: confirm it first-hand before use\n",
				},
				{
					args: []string{"grant", "ada@example.com", "market_research", "--method", "double-opt-in", "--bundled",
						"--expires-at", d.arg(11)},
					env:  map[string]string{actorEnv: "dpo@example.com"},
					want: "granted market_research for ada@example.com (double_opt_in, first party, bundled); consistency token 0/3\n",
				},
				{
					args: []string{"check", "ada@example.com", "market_research"}, code: 1,
					want: "deny (not_specific): the yes covered several purposes at once (bundled): ask for each purpose\n",
				},
				{
					args: []string{"grant", "bo@example.com", "ad_retargeting", "--method", "checkbox", "--captured-at", d.arg(-14)},
					want: "granted ad_retargeting for bo@example.com (checkbox, first party); consistency token 0/4\n",
				},
				{
					args: []string{"check", "bo@example.com", "ad_retargeting"}, code: 1,
					want: "deny (stale): the yes is older than the purpose's re-confirmation window: ask again\n",
				},
				{
					args: []string{"grant", "bo@example.com", "email_marketing", "--method", "button",
						"--captured-at", d.arg(-3), "--expires-at", d.arg(-1), "--actor", "import-7"},
					want: "granted email_marketing for bo@example.com (button, first party); consistency token 0/5\n",
				},
				{
					args: []string{"check", "bo@example.com", "email_marketing"}, code: 1,
					want: "deny (expired): the end date the person agreed to has passed\n",
				},
				{
					args: []string{"show", "ada@example.com"},
					want: `
PURPOSE          DECISION  REASON                   METHOD                   SOURCE                    NOTICE   EVIDENCE       CAPTURED              RECORDED              EXPIRES               ACTOR            WITHDRAWN
email_marketing  allow     granted                  checkbox                 first party               2026-05  form:signup-7  MONTHS-1____________  NOW-----------------  -                     consentctl       -
sales_outreach   allow     granted                  checkbox                 first party               2026-05  form:signup-7  MONTHS-1____________  NOW-----------------  -                     consentctl       -
market_research  deny      not_specific             double_opt_in (bundled)  first party               -        -              NOW-----------------  NOW-----------------  MONTHS+11___________  dpo@example.com  -
ad_retargeting   deny      third_party_unconfirmed  verbal                   third party (Acme Lists)  -        call:42        NOW-----------------  NOW-----------------  -                     consentctl       -
`,
				},
				{
					args: []string{"withdraw", "ada@example.com", "email_marketing", "--method", "email_reply"},
					want: "withdrew email_marketing for ada@example.com; consistency token 0/6\n",
				},
				{
					args: []string{"show", "ada@example.com"},
					want: `
PURPOSE          DECISION  REASON                   METHOD                   SOURCE                    NOTICE   EVIDENCE       CAPTURED              RECORDED              EXPIRES               ACTOR            WITHDRAWN
email_marketing  deny      withdrawn                checkbox                 first party               2026-05  form:signup-7  MONTHS-1____________  NOW-----------------  -                     consentctl       NOW-----------------
sales_outreach   allow     granted                  checkbox                 first party               2026-05  form:signup-7  MONTHS-1____________  NOW-----------------  -                     consentctl       -
market_research  deny      not_specific             double_opt_in (bundled)  first party               -        -              NOW-----------------  NOW-----------------  MONTHS+11___________  dpo@example.com  -
ad_retargeting   deny      third_party_unconfirmed  verbal                   third party (Acme Lists)  -        call:42        NOW-----------------  NOW-----------------  -                     consentctl       -
`,
				},
				{
					args: []string{"check", "ada@example.com", "email_marketing", "--consistency-token", lastToken}, code: 1,
					want: "deny (withdrawn): the latest event for this purpose is a withdrawal\n",
				},
				{
					// Made up, in the format of the version before tags.
					args: []string{"check", "ada@example.com", "email_marketing", "--consistency-token", "AQAG"}, code: 2,
					stderr: "consentctl check: --consistency-token: \"AQAG\" is not a consistency token returned by consentd\n",
				},
				{
					// Made up: partition 0, sequence 6, a tag of its own.
					args: []string{"check", "ada@example.com", "email_marketing", "--consistency-token", "AgAGASNFZ4mrze8"}, code: 2,
					stderr: "consentctl check: consistency.at_least_as_fresh: not a consistency token this consentd store issued\n",
				},
				{
					args: []string{"check", "ada@example.com", "sales_outreach"},
					want: "allow (granted): a specific, first-party yes is on record, within the purpose's window\n",
				},
				{
					args: []string{"history", "ada@example.com"},
					want: `
RECORDED              EVENT     PURPOSES                        METHOD                   SOURCE                    NOTICE   EVIDENCE       CAPTURED              EXPIRES               ACTOR
NOW-----------------  grant     email_marketing,sales_outreach  checkbox                 first party               2026-05  form:signup-7  MONTHS-1____________  -                     consentctl
NOW-----------------  grant     ad_retargeting                  verbal                   third party (Acme Lists)  -        call:42        NOW-----------------  -                     consentctl
NOW-----------------  grant     market_research                 double_opt_in (bundled)  first party               -        -              NOW-----------------  MONTHS+11___________  dpo@example.com
NOW-----------------  withdraw  email_marketing                 email_reply              -                         -        -              NOW-----------------  -                     consentctl
`,
				},
				{
					args: []string{"withdraw", "ada@example.com"},
					want: "withdrew every purpose for ada@example.com; consistency token 0/7\n",
				},
				{
					args: []string{"check", "ada@example.com", "sales_outreach"}, code: 1,
					want: "deny (withdrawn): the latest event for this purpose is a withdrawal\n",
				},
				{
					args: []string{"erase", "ada@example.com"},
					want: "erased ada@example.com: its record and history are deleted; a suppression marker keeps it from being re-imported; consistency token 0/8\n",
				},
				{
					args: []string{"check", "ada@example.com", "email_marketing"}, code: 1,
					want: "deny (erased): the contact was erased and has not consented since\n",
				},
				{
					args: []string{"show", "ada@example.com"},
					want: `
erased at NOW-----------------
PURPOSE          DECISION  REASON  METHOD  SOURCE  NOTICE  EVIDENCE  CAPTURED  RECORDED  EXPIRES  ACTOR  WITHDRAWN
email_marketing  deny      erased  -       -       -       -         -         -         -        -      -
sales_outreach   deny      erased  -       -       -       -         -         -         -        -      -
market_research  deny      erased  -       -       -       -         -         -         -        -      -
ad_retargeting   deny      erased  -       -       -       -         -         -         -        -      -
`,
				},
				{
					args: []string{"history", "ada@example.com"},
					want: `
RECORDED              EVENT  PURPOSES  METHOD  SOURCE  NOTICE  EVIDENCE  CAPTURED              EXPIRES  ACTOR
NOW-----------------  erase  all       -       -       -       -         NOW-----------------  -        consentctl
`,
				},
				{
					args: []string{"history", "nobody@example.com"},
					want: "no events recorded for nobody@example.com\n",
				},
				{
					args: []string{"purposes"},
					want: `PURPOSE          RECONFIRM  THIRD_PARTY  RETENTION  DESCRIPTION
email_marketing  24 months  re-confirm   36 months  Marketing emails and newsletters
sales_outreach   24 months  re-confirm   36 months  Calls and messages from the sales team
market_research  24 months  re-confirm   36 months  Surveys and research interviews
ad_retargeting   13 months  re-confirm   25 months  Matching to advertising audiences
`,
				},
			}
			last := "" // the consistency token of the last write
			for _, s := range steps {
				args := slices.Clone(s.args)
				if i := slices.Index(args, lastToken); i >= 0 {
					args[i] = last
				}
				r := ctl(t, s.env, append([]string{"--addr", addr}, args...)...)
				if m := writtenToken.FindStringSubmatch(r.stdout); m != nil {
					last = m[1]
				}
				want := d.expand(strings.TrimPrefix(s.want, "\n"))
				if got := normaliseTokens(t, normalise(r.stdout)); r.code != s.code || got != want || r.stderr != s.stderr {
					t.Errorf("consentctl %s: exit %d, stderr %q; want exit %d, stderr %q; stdout (-want +got):\n%s",
						strings.Join(args, " "), r.code, r.stderr, s.code, s.stderr, cmp.Diff(want, got))
				}
			}
		})
	}
}

// lastToken, in a step's arguments, stands for the consistency token the
// last write printed.
const lastToken = "LAST-TOKEN"

// writtenToken is the consistency token a write prints.
var writtenToken = regexp.MustCompile(`; consistency token ([A-Za-z0-9_-]+)\n`)

// normaliseTokens spells each consistency token a write printed as the
// point in history it names, PARTITION/SEQ: its tag depends on the store's
// secret and id, which are new in every test.
func normaliseTokens(t *testing.T, s string) string {
	t.Helper()
	return writtenToken.ReplaceAllStringFunc(s, func(m string) string {
		text := writtenToken.FindStringSubmatch(m)[1]
		tok, err := consent.ParseConsistencyToken(text)
		if err != nil {
			t.Errorf("a write printed %q, not a consistency token", text)
			return m
		}
		return fmt.Sprintf("; consistency token %d/%d\n", tok.Partition, tok.Seq)
	})
}

// TestJSON checks that --json output parses, with stable field names, for
// every command.
func TestJSON(t *testing.T) {
	addr := backends()[0].start(t)
	decode := func(t *testing.T, out string, v any) {
		t.Helper()
		dec := json.NewDecoder(strings.NewReader(out))
		dec.DisallowUnknownFields()
		if err := dec.Decode(v); err != nil {
			t.Fatalf("%v in:\n%s", err, out)
		}
	}
	keys := func(t *testing.T, out string) []string {
		t.Helper()
		var m map[string]json.RawMessage
		decode(t, out, &m)
		var ks []string
		for k := range m {
			ks = append(ks, k)
		}
		slices.Sort(ks)
		return ks
	}

	var w writeJSON
	decode(t, mustRun(t, addr, "--json", "grant", "cy@example.com", "email_marketing", "--method", "paper_form",
		"--source", "first_party", "--evidence", "scan:991", "--notice", "v3", "--request-id", "paper-991"), &w)
	granted := w.ConsistencyToken
	if tok, err := consent.ParseConsistencyToken(granted); err != nil || tok.Seq != 1 {
		t.Errorf("grant --json: consistency token %q (%+v, %v), want the first write's", granted, tok, err)
	}
	if diff := cmp.Diff(writeJSON{ConsistencyToken: granted, RequestID: "paper-991"}, w); diff != "" {
		t.Errorf("grant --json (-want +got):\n%s", diff)
	}
	// The same request id again applies nothing: the same token comes back.
	w = writeJSON{}
	decode(t, mustRun(t, addr, "grant", "cy@example.com", "email_marketing", "--method", "paper_form",
		"--source", "first_party", "--evidence", "scan:991", "--notice", "v3", "--request-id", "paper-991", "--json"), &w)
	if w.ConsistencyToken != granted {
		t.Errorf("retried grant: consistency token %q, want the first one, %q", w.ConsistencyToken, granted)
	}

	r := at(t, addr, "--json", "check", "cy@example.com", "email_marketing")
	var c checkJSON
	decode(t, r.stdout, &c)
	want := checkJSON{Contact: "cy@example.com", Purpose: "email_marketing", Allowed: true, Decision: "DECISION_ALLOW", Reason: "REASON_GRANTED"}
	if diff := cmp.Diff(want, c); r.code != 0 || diff != "" {
		t.Errorf("check --json: exit %d (-want +got):\n%s", r.code, diff)
	}
	r = at(t, addr, "check", "--json", "cy@example.com", "ad_retargeting")
	c = checkJSON{}
	decode(t, r.stdout, &c)
	want = checkJSON{Contact: "cy@example.com", Purpose: "ad_retargeting", Decision: "DECISION_DENY", Reason: "REASON_NO_CONSENT"}
	if diff := cmp.Diff(want, c); r.code != 1 || diff != "" {
		t.Errorf("denied check --json: exit %d, want 1 (-want +got):\n%s", r.code, diff)
	}

	out := mustRun(t, addr, "--json", "show", "cy@example.com")
	if diff := cmp.Diff([]string{"consistencyToken", "erasedAt", "identifier", "links", "person", "purposes"}, keys(t, out)); diff != "" {
		t.Errorf("show --json keys (-want +got):\n%s", diff)
	}
	var contact pb.GetContactResponse
	if err := protojson.Unmarshal([]byte(out), &contact); err != nil {
		t.Fatal(err)
	}
	g := contact.GetPurposes()[0].GetGrant()
	if contact.GetPurposes()[0].GetPurpose() != "email_marketing" || g.GetMethod() != pb.Method_METHOD_PAPER_FORM ||
		g.GetEvidenceRef() != "scan:991" || g.GetNoticeVersion() != "v3" || g.GetActor() != "consentctl" || contact.GetConsistencyToken() != granted {
		t.Errorf("show --json: %v", &contact)
	}

	mustRun(t, addr, "withdraw", "cy@example.com", "--json")
	out = mustRun(t, addr, "--json", "history", "cy@example.com")
	if diff := cmp.Diff([]string{"events"}, keys(t, out)); diff != "" {
		t.Errorf("history --json keys (-want +got):\n%s", diff)
	}
	var h struct{ Events []json.RawMessage }
	decode(t, out, &h)
	var kinds []pb.EventKind
	for _, raw := range h.Events {
		var e pb.Event
		if err := protojson.Unmarshal(raw, &e); err != nil {
			t.Fatal(err)
		}
		kinds = append(kinds, e.GetKind())
	}
	if diff := cmp.Diff([]pb.EventKind{pb.EventKind_EVENT_KIND_GRANT, pb.EventKind_EVENT_KIND_WITHDRAW}, kinds); diff != "" {
		t.Errorf("history --json kinds (-want +got):\n%s", diff)
	}
	var first map[string]json.RawMessage
	decode(t, string(h.Events[0]), &first)
	for _, k := range []string{"kind", "purposes", "method", "source", "evidenceRef", "noticeVersion", "capturedAt", "recordedAt", "actor", "requestId", "consistencyToken"} {
		if _, ok := first[k]; !ok {
			t.Errorf("history --json event has no %q: %s", k, h.Events[0])
		}
	}

	out = mustRun(t, addr, "--json", "purposes")
	var ps pb.ListPurposesResponse
	if err := protojson.Unmarshal([]byte(out), &ps); err != nil {
		t.Fatal(err)
	}
	if len(ps.GetPurposes()) != 4 || ps.GetPurposes()[3].GetName() != "ad_retargeting" || ps.GetPurposes()[3].GetReconfirmMonths() != 13 {
		t.Errorf("purposes --json: %v", &ps)
	}

	var e writeJSON
	decode(t, mustRun(t, addr, "--json", "erase", "cy@example.com"), &e)
	if tok, err := consent.ParseConsistencyToken(e.ConsistencyToken); err != nil || tok.Seq != 3 || !strings.HasPrefix(e.RequestID, "client-") {
		t.Errorf("erase --json: %+v, want the third write's consistency token", e)
	}
}

// TestAddress covers where consentctl looks for consentd: --addr, then
// $CONSENTD_ADDR, then the default; and Unix sockets.
func TestAddress(t *testing.T) {
	sock := filepath.Join(shortTempDir(t), "consentd.sock")
	daemontest.Start(t, "--listen", "unix:"+sock, "--data-dir", t.TempDir())
	tcp := daemontest.Start(t, "--data-dir", t.TempDir()).Addr
	dead := daemontest.DeadAddr(t)
	tests := []struct {
		name string
		env  map[string]string
		args []string
		code int
		want string // stdout, or the start of stderr when code is 2
	}{
		{"flag, unix socket", nil, []string{"--addr", "unix:" + sock, "purposes"}, 0, "PURPOSE "},
		{"env", map[string]string{addrEnv: tcp}, []string{"purposes"}, 0, "PURPOSE "},
		{"env, unix socket", map[string]string{addrEnv: "unix:" + sock}, []string{"purposes"}, 0, "PURPOSE "},
		{"flag wins over env", map[string]string{addrEnv: dead}, []string{"--addr", tcp, "purposes"}, 0, "PURPOSE "},
		{"flag after the command wins over env", map[string]string{addrEnv: dead}, []string{"purposes", "--addr", tcp}, 0, "PURPOSE "},
		{"flag names a dead address", map[string]string{addrEnv: tcp}, []string{"--addr", dead, "purposes"}, 2,
			"consentctl purposes: could not reach consentd at " + dead + ": dial tcp " + dead + ": connect: connection refused\n"},
		{"env names a dead address", map[string]string{addrEnv: dead}, []string{"check", "a@example.com", "email_marketing"}, 2,
			"consentctl check: could not reach consentd at " + dead + ": "},
		{"no such socket", nil, []string{"--addr", "unix:" + sock + ".missing", "purposes"}, 2,
			"consentctl purposes: could not reach consentd at unix:" + sock + ".missing: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ctl(t, tt.env, tt.args...)
			got := r.stdout
			if tt.code == 2 {
				got = r.stderr
				if r.stdout != "" || strings.Count(r.stderr, "\n") != 1 {
					t.Errorf("want one line on stderr and nothing on stdout; stdout %q, stderr %q", r.stdout, r.stderr)
				}
			}
			if r.code != tt.code || !strings.HasPrefix(got, tt.want) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d and output starting %q", r.code, r.stdout, r.stderr, tt.code, tt.want)
			}
		})
	}
}

// TestTimeout: a server that accepts connections but never answers makes
// consentctl give up after --timeout with a clear message.
func TestTimeout(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		done  = make(chan struct{})
	)
	go func() {
		defer close(done)
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		lis.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	addr := lis.Addr().String()
	start := time.Now()
	r := at(t, addr, "--timeout", "300ms", "check", "a@example.com", "email_marketing")
	want := "consentctl check: consentd at " + addr + " did not answer within 300ms (--timeout)\n"
	if r.code != 2 || r.stderr != want || r.stdout != "" {
		t.Errorf("exit %d, stdout %q, stderr %q; want exit 2, %q", r.code, r.stdout, r.stderr, want)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("took %v with --timeout 300ms", took)
	}
}

// TestStoreDown: when consentd's Redis is gone, a check is an error (exit 2,
// never a yes) that says the store, not consentd, is unreachable.
func TestStoreDown(t *testing.T) {
	srv := redistest.Start(t, redisproc.Options{})
	addr := startConsentdOnRedis(t, srv)
	mustRun(t, addr, "grant", "dee@example.com", "email_marketing", "--method", "checkbox")
	srv.Kill(t)
	r := at(t, addr, "--timeout", "20s", "check", "someone-else@example.com", "email_marketing")
	want := "consentctl check: consentd at " + addr + " cannot reach its store: "
	if r.code != 2 || !strings.HasPrefix(r.stderr, want) || strings.Count(r.stderr, "\n") != 1 || r.stdout != "" {
		t.Errorf("exit %d, stdout %q, stderr %q; want exit 2 and a line starting %q", r.code, r.stdout, r.stderr, want)
	}
}

// TestBadInput: every mistake gets one clear line on stderr, exit 2, nothing
// on stdout, and changes nothing in the store.
func TestBadInput(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			addr := b.start(t)
			mustRun(t, addr, "grant", "bad@example.com", "email_marketing", "--method", "checkbox")
			mustRun(t, addr, "grant", "gone@example.com", "email_marketing", "--method", "checkbox")
			mustRun(t, addr, "erase", "gone@example.com")
			// The store's state: both contacts as shown and their histories,
			// and the sequence number of the last write (one partition, so
			// a canary write must get exactly the next one).
			snapshot := func() string {
				var b strings.Builder
				for _, c := range []string{"bad@example.com", "gone@example.com"} {
					b.WriteString(mustRun(t, addr, "--json", "show", c))
					b.WriteString(mustRun(t, addr, "--json", "history", c))
				}
				return b.String()
			}
			seq := func() uint64 {
				var w writeJSON
				if err := json.Unmarshal([]byte(mustRun(t, addr, "--json", "grant", "canary@example.com", "email_marketing", "--method", "checkbox")), &w); err != nil {
					t.Fatal(err)
				}
				tok, err := consent.ParseConsistencyToken(w.ConsistencyToken)
				if err != nil {
					t.Fatal(err)
				}
				return tok.Seq
			}
			before, last := snapshot(), seq()
			future := time.Now().UTC().Add(24 * time.Hour).Format(time.RFC3339)
			dead := daemontest.DeadAddr(t)
			tests := []struct {
				name string
				args []string // run with --addr addr in front
				want string   // the whole of stderr
			}{
				{"unknown command", []string{"frobnicate", "bad@example.com"},
					`consentctl: unknown command "frobnicate" (run 'consentctl help' for the list)`},
				{"unknown flag", []string{"check", "bad@example.com", "email_marketing", "--fresh"},
					`consentctl check: flag provided but not defined: -fresh (run 'consentctl help check' for usage)`},
				{"unknown global flag", []string{"--verbose", "check", "bad@example.com", "email_marketing"},
					`consentctl: flag provided but not defined: -verbose (run 'consentctl help' for usage)`},
				{"check without purpose", []string{"check", "bad@example.com"},
					`consentctl check: missing PURPOSE (usage: consentctl check CONTACT PURPOSE [--consistency-token TOKEN])`},
				{"check without arguments", []string{"check"},
					`consentctl check: missing CONTACT PURPOSE (usage: consentctl check CONTACT PURPOSE [--consistency-token TOKEN])`},
				{"check with an extra argument", []string{"check", "bad@example.com", "email_marketing", "sales_outreach"},
					`consentctl check: unexpected argument "sales_outreach" (usage: consentctl check CONTACT PURPOSE [--consistency-token TOKEN])`},
				{"check of an unknown purpose", []string{"check", "bad@example.com", "email"},
					`consentctl check: purpose: unknown purpose "email" (known: email_marketing, sales_outreach, market_research, ad_retargeting)`},
				{"check of an empty contact", []string{"check", "", "email_marketing"},
					`consentctl check: contact: must not be empty`},
				// The rule import holds contacts to, and every command with them.
				{"grant to no address", []string{"grant", "ada example.com", "email_marketing", "--method", "checkbox"},
					`consentctl grant: contact: not an email address or phone number`},
				{"withdraw of an address with a zero-width space", []string{"withdraw", "bad\u200b@example.com"},
					`consentctl withdraw: contact: must not contain invisible or bidirectional control characters (zero-width, bidi marks)`},
				{"erase of an address behind a bidi override", []string{"erase", "\u202ebad@example.com"},
					`consentctl erase: contact: must not contain invisible or bidirectional control characters (zero-width, bidi marks)`},
				{"grant to a national number without --default-region", []string{"grant", "020 7946 0958", "email_marketing", "--method", "checkbox"},
					`consentctl grant: contact: phone number without + and country code needs a default region (consentd --default-region, e.g. GB)`},
				{"check with a bad token", []string{"check", "bad@example.com", "email_marketing", "--consistency-token", "nope!"},
					`consentctl check: --consistency-token: "nope!" is not a consistency token returned by consentd`},
				{"grant without purpose", []string{"grant", "bad@example.com", "--method", "checkbox"},
					`consentctl grant: missing PURPOSE (usage: consentctl grant CONTACT PURPOSE... --method METHOD [flags])`},
				{"grant without method", []string{"grant", "bad@example.com", "sales_outreach"},
					`consentctl grant: --method is required: consent must be affirmative, so name how it was obtained (checkbox, button, dropdown, account_settings, email_reply, verbal, paper_form, double_opt_in)`},
				{"grant with a bad method", []string{"grant", "bad@example.com", "sales_outreach", "--method", "tick"},
					`consentctl grant: --method: unknown method "tick" (known: checkbox, button, dropdown, account_settings, email_reply, verbal, paper_form, double_opt_in)`},
				{"grant with method unspecified", []string{"grant", "bad@example.com", "sales_outreach", "--method", "unspecified"},
					`consentctl grant: --method: unknown method "unspecified" (known: checkbox, button, dropdown, account_settings, email_reply, verbal, paper_form, double_opt_in)`},
				{"grant with --method and no value", []string{"grant", "bad@example.com", "sales_outreach", "--method"},
					`consentctl grant: flag needs an argument: -method (run 'consentctl help grant' for usage)`},
				{"grant with a withdrawal method", []string{"grant", "bad@example.com", "sales_outreach", "--method", "one_click_unsubscribe"},
					`consentctl grant: --method: one_click_unsubscribe records a no, never a yes (known: checkbox, button, dropdown, account_settings, email_reply, verbal, paper_form, double_opt_in)`},
				{"grant with a bad source", []string{"grant", "bad@example.com", "sales_outreach", "--method", "checkbox", "--source", "bought"},
					`consentctl grant: --source: unknown source "bought" (known: first_party, third_party)`},
				{"grant with a bad date", []string{"grant", "bad@example.com", "sales_outreach", "--method", "checkbox", "--captured-at", "2026-13-01"},
					`consentctl grant: --captured-at: "2026-13-01" is not a date: want YYYY-MM-DD or an RFC 3339 time like 2026-05-01T10:00:00Z`},
				{"grant with a word for a date", []string{"grant", "bad@example.com", "sales_outreach", "--method", "checkbox", "--expires-at", "never"},
					`consentctl grant: --expires-at: "never" is not a date: want YYYY-MM-DD or an RFC 3339 time like 2026-05-01T10:00:00Z`},
				{"grant of an unknown purpose", []string{"grant", "bad@example.com", "sales_outreach", "email", "--method", "checkbox"},
					`consentctl grant: purposes[1]: unknown purpose "email" (known: email_marketing, sales_outreach, market_research, ad_retargeting)`},
				{"grant captured in the future", []string{"grant", "bad@example.com", "sales_outreach", "--method", "checkbox", "--captured-at", future},
					`consentctl grant: captured_at: is more than 5m0s in the future`},
				{"grant that ends before it starts", []string{"grant", "bad@example.com", "sales_outreach", "--method", "checkbox", "--expires-at", "2020-01-01"},
					`consentctl grant: expires_at: must be after captured_at`},
				{"third party without a name", []string{"grant", "bad@example.com", "sales_outreach", "--method", "checkbox", "--source", "third_party"},
					`consentctl grant: third_party: must name the third party when source is SOURCE_THIRD_PARTY`},
				{"re-import of an erased contact", []string{"grant", "gone@example.com", "email_marketing", "--method", "checkbox", "--third-party", "Acme Lists"},
					`consentctl grant: contact is suppressed: it was erased, and a third-party grant may not re-import it`},
				{"withdraw of an unknown purpose", []string{"withdraw", "bad@example.com", "email"},
					`consentctl withdraw: purposes[0]: unknown purpose "email" (known: email_marketing, sales_outreach, market_research, ad_retargeting)`},
				{"withdraw with a bad method", []string{"withdraw", "bad@example.com", "--method", "shouting"},
					`consentctl withdraw: --method: unknown method "shouting" (known: checkbox, button, dropdown, account_settings, email_reply, verbal, paper_form, double_opt_in, one_click_unsubscribe)`},
				{"withdraw without contact", []string{"withdraw"},
					`consentctl withdraw: missing CONTACT (usage: consentctl withdraw CONTACT [PURPOSE...] [flags])`},
				{"erase without contact", []string{"erase"},
					`consentctl erase: missing CONTACT (usage: consentctl erase CONTACT [flags])`},
				{"erase of two contacts", []string{"erase", "bad@example.com", "gone@example.com"},
					`consentctl erase: unexpected argument "gone@example.com" (usage: consentctl erase CONTACT [flags])`},
				{"erase of a contact with a control character", []string{"erase", "bad@example.com\x07"},
					`consentctl erase: contact: must not contain control characters`},
				{"show with an extra argument", []string{"show", "bad@example.com", "email_marketing"},
					`consentctl show: unexpected argument "email_marketing" (usage: consentctl show CONTACT)`},
				{"purposes with an argument", []string{"purposes", "email_marketing"},
					`consentctl purposes: unexpected argument "email_marketing" (usage: consentctl purposes)`},
				{"zero timeout", []string{"--timeout", "0s", "erase", "bad@example.com"},
					`consentctl erase: --timeout must be positive, got 0s`},
				{"bad timeout", []string{"erase", "bad@example.com", "--timeout", "soon"},
					`consentctl erase: invalid value "soon" for flag -timeout: parse error (run 'consentctl help erase' for usage)`},
				{"unreachable consentd", []string{"erase", "bad@example.com", "--addr", dead},
					`consentctl erase: could not reach consentd at ` + dead + `: dial tcp ` + dead + `: connect: connection refused`},
				{"help of an unknown command", []string{"help", "frobnicate"},
					`consentctl help: unknown command "frobnicate" (run 'consentctl help' for the list)`},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					r := at(t, addr, tt.args...)
					want := tt.want + "\n"
					if r.code != 2 || r.stderr != want || r.stdout != "" {
						t.Errorf("exit %d, stdout %q, stderr %q; want exit 2 and stderr %q", r.code, r.stdout, r.stderr, want)
					}
					if after := snapshot(); after != before {
						t.Errorf("the store changed:\n%s", cmp.Diff(before, after))
					}
					if next := seq(); next != last+1 {
						t.Errorf("a write happened: canary got sequence %d, want %d", next, last+1)
					}
					last++
				})
			}
		})
	}
}

func TestHelp(t *testing.T) {
	names := []string{"check", "grant", "withdraw", "erase", "show", "history", "purposes", "link", "unlink", "rectify", "help"}
	for _, args := range [][]string{{"help"}, {"-h"}, {"--help"}, {"--addr", "x", "-help"}} {
		r := ctl(t, nil, args...)
		if r.code != 0 || r.stderr != "" {
			t.Errorf("consentctl %v: exit %d, stderr %q", args, r.code, r.stderr)
		}
		for _, n := range names {
			if !strings.Contains(r.stdout, "\n  "+n+" ") {
				t.Errorf("consentctl %v does not list %s:\n%s", args, n, r.stdout)
			}
		}
	}
	for _, args := range [][]string{{"help", "grant"}, {"grant", "-h"}, {"grant", "a@example.com", "--help"}} {
		r := ctl(t, nil, args...)
		if r.code != 0 || r.stderr != "" || !strings.HasPrefix(r.stdout, "Usage: consentctl grant CONTACT PURPOSE... --method METHOD [flags]\n") {
			t.Errorf("consentctl %v: exit %d, stderr %q, stdout:\n%s", args, r.code, r.stderr, r.stdout)
		}
		for _, f := range []string{"--method METHOD ", "--third-party NAME ", "--captured-at DATE ", "--bundled ", "--addr ADDR "} {
			if !strings.Contains(r.stdout, "\n  "+f) {
				t.Errorf("consentctl %v does not describe %s:\n%s", args, f, r.stdout)
			}
		}
	}
	r := ctl(t, nil)
	if want := "consentctl: no command given (run 'consentctl help' for the list)\n"; r.code != 2 || r.stderr != want || r.stdout != "" {
		t.Errorf("consentctl: exit %d, stdout %q, stderr %q; want exit 2, %q", r.code, r.stdout, r.stderr, want)
	}
}

// shortTempDir is a temporary directory with a path short enough for a Unix
// socket (t.TempDir's can exceed the 108-byte limit).
func shortTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "cctl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
