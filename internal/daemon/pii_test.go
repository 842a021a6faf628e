package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"
	"golang.org/x/text/unicode/norm"
	"google.golang.org/grpc/codes"

	"github.com/consentd/consentd/client"
	"github.com/consentd/consentd/internal/identifier"
	"github.com/consentd/consentd/internal/promscrape"
	"github.com/consentd/consentd/internal/redisproc"
	"github.com/consentd/consentd/internal/redistest"
	"github.com/consentd/consentd/internal/tokensfile"
	pb "github.com/consentd/consentd/proto/consent/v1"
)

// piiContacts are the test contacts of TestNoRawContactAtRest, sent exactly
// as written: mixed case, surrounding whitespace, Unicode in NFC and in NFD
// (so the raw form and the normalised form differ in bytes, not just in
// case). Each local part is distinctive, so finding one anywhere can only
// mean a leak.
var piiContacts = []string{
	" Zoë.Tester+pii@Example.COM ",
	"\tMARIE-NOE\u0308LLE.Leakcheck@Bücher.Example\n",
	"Kai.Okonkwo.PIIscan@Mail.Example.NET",
	"田中.ぴい.Scan@例え.JP",
	"  Åsa.Lindqvist-Sekret+news@Example.se",
}

// piiNeedle is one form of a test contact the scan looks for.
type piiNeedle struct {
	contact int    // index in the contacts scanned for
	form    string // "raw", "normalised", "local part", ...
	text    string // lower case
}

// piiNeedles returns what a scan for contacts looks for: each contact as
// sent, trimmed, canonical (internal/identifier, as contactkey keys it),
// URL-escaped (query and path) and JSON-escaped; of an address, its local
// part, the local part before any +tag and the local part's longest ASCII
// run, which survives a \u escape of its other characters (JSON, Go's %q);
// of a phone number, its digits. Each form is looked for in NFC and NFD, lower-cased:
// the scan lower-cases what it scans.
func piiNeedles(contacts []string) []piiNeedle {
	var ns []piiNeedle
	seen := map[string]bool{}
	add := func(i int, form, s string) {
		for _, v := range []string{s, norm.NFC.String(s), norm.NFD.String(s)} {
			v = strings.ToLower(v)
			// Shorter needles would match by chance (hex, base64): every
			// test contact has longer distinctive parts.
			if len([]rune(v)) < 6 || seen[v] {
				continue
			}
			seen[v] = true
			ns = append(ns, piiNeedle{contact: i, form: form, text: v})
		}
	}
	for i, c := range contacts {
		n := c
		if id, err := (identifier.Parser{DefaultRegion: "GB"}).Parse(c); err == nil {
			n = id.Canonical
		}
		local, _, _ := strings.Cut(n, "@")
		plain, _, _ := strings.Cut(local, "+")
		add(i, "raw", c)
		add(i, "trimmed", strings.TrimSpace(c))
		add(i, "normalised", n)
		for _, v := range []string{c, strings.TrimSpace(c), norm.NFD.String(c), norm.NFD.String(strings.TrimSpace(c))} {
			add(i, "URL-escaped", url.QueryEscape(v))
			add(i, "URL-escaped", url.PathEscape(v))
			j, _ := json.Marshal(v)
			add(i, "JSON-escaped", strings.Trim(string(j), `"`))
		}
		if strings.Contains(n, "@") {
			add(i, "local part", local)
			add(i, "plain local part", plain)
			add(i, "ASCII run of the local part", longestASCIIRun(local))
			continue
		}
		// A phone number's digits: ten or more, since fewer (or a run of
		// them between spaces) would match a duration by chance.
		if digits := strings.Map(keepDigit, c); len(digits) >= 10 {
			add(i, "digits", digits)
		}
	}
	return ns
}

func keepDigit(r rune) rune {
	if r >= '0' && r <= '9' {
		return r
	}
	return -1
}

// longestASCIIRun is the longest run of ASCII letters, digits and
// punctuation in s.
func longestASCIIRun(s string) string {
	best, cur := "", ""
	for _, r := range s {
		if r < unicode.MaxASCII && unicode.IsPrint(r) && r != ' ' {
			cur += string(r)
			if len(cur) > len(best) {
				best = cur
			}
			continue
		}
		cur = ""
	}
	return best
}

// piiScanner looks for needles in everything scanned and remembers where
// it found them.
type piiScanner struct {
	contacts []string
	needles  []piiNeedle
	found    []string
	scanned  int // sources scanned, so a scan of nothing cannot pass
}

func newPIIScanner(contacts []string) *piiScanner {
	return &piiScanner{contacts: contacts, needles: piiNeedles(contacts)}
}

// scan looks for every needle in b, case-insensitively; where names the
// source for the report.
func (s *piiScanner) scan(where string, b []byte) {
	s.scanned++
	// bytes.ToLower keeps invalid UTF-8 (binary files) as U+FFFD, which
	// no needle contains.
	lower := bytes.ToLower(b)
	for _, n := range s.needles {
		if i := bytes.Index(lower, []byte(n.text)); i >= 0 {
			lo, hi := max(0, i-40), min(len(b), i+len(n.text)+40)
			s.found = append(s.found, fmt.Sprintf("%s: %s of contact %q (%q) at byte %d: …%q…", where, n.form, s.contacts[n.contact], n.text, i, b[lo:hi]))
		}
	}
}

// TestPIIScannerFindsPlanted: the scan can fail. An address planted in any
// of the forms it looks for is found, wherever in the bytes it is; bytes
// holding only keyed hashes and other contacts are clean.
func TestPIIScannerFindsPlanted(t *testing.T) {
	contact, phone := piiContacts[0], "+44 7700 900461"
	for _, tc := range []struct {
		name    string
		contact string // default contact
		data    []byte
		want    bool
	}{
		{"raw, in binary", "", append(append([]byte{0, 0xff, 0xfe}, contact...), 0x80), true},
		{"upper case", "", []byte(strings.ToUpper(contact)), true},
		{"normalised", "", []byte(`{"msg":"rpc","contact":"zoë.tester+pii@example.com"}`), true},
		{"NFD", "", []byte(norm.NFD.String("ZOË.TESTER+PII@example.com")), true},
		{"local part only", "", []byte("key=zoë.tester+pii"), true},
		{"plain local part", "", []byte("user Zoë.Tester, hello"), true},
		{"escaped by JSON", "", []byte(`"contact":"Zo\u00eb.Tester+pii@Example.COM"`), true},
		{"escaped in a URL", "", []byte(`GET /unsubscribe/Zo%C3%AB.Tester%2Bpii%40Example.COM`), true},
		{"phone", phone, []byte(`{"purpose":"+44 7700 900461"}`), true},
		{"phone in a URL query", phone, []byte(`?c=%2B44+7700+900461`), true},
		{"phone in a URL path", phone, []byte(`/unsubscribe/+44%207700%20900461`), true},
		{"phone's digits", phone, []byte(`tel=447700900461`), true},
		{"a duration is not a phone", phone, []byte(`"elapsed":9004617`), false},
		{"another contact", "", []byte(piiContacts[2]), false},
		{"keyed hash only", "", []byte("consentd:{3}:rec:4f1c2b0e9a7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a392817"), false},
		{"nothing", "", nil, false},
	} {
		if tc.contact == "" {
			tc.contact = contact
		}
		s := newPIIScanner([]string{tc.contact})
		s.scan(tc.name, tc.data)
		if got := len(s.found) > 0; got != tc.want {
			t.Errorf("%s: found %v (%q), want %v", tc.name, got, s.found, tc.want)
		}
	}

	// Every source kind the real test scans reports where it found one.
	s := newPIIScanner(piiContacts)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "planted.db"), []byte("\x00\x01"+piiContacts[3]), 0o600); err != nil {
		t.Fatal(err)
	}
	if n := scanDir(t, s, "data dir", dir); n != 1 {
		t.Errorf("scanned %d files, want 1", n)
	}
	var got []string
	for _, f := range s.found {
		where, _, _ := strings.Cut(f, ":")
		got = append(got, where)
	}
	if want := []string{"data dir planted.db"}; !slices.Equal(slices.Compact(got), want) {
		t.Errorf("found in %q, want %q", got, want)
	}
}

// TestNoRawContactAtRest (issue 6): no raw contact appears in logs (debug
// level, denials, bad input), metrics labels, Redis keys or values, or the
// embedded file, after every RPC has been driven with the test contacts.
// The scans cover everything there is, not known keys or files, so a new
// kind of record (a history chain, erasure markers) is covered too.
func TestNoRawContactAtRest(t *testing.T) {
	for _, tc := range []struct {
		name  string
		redis bool
	}{
		{name: "embedded"},
		{name: "redis", redis: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dataDir := t.TempDir()
			tokens := map[string]string{"dpo-tool": "pii-dpo-token", "mailer": "pii-mail-token"}
			policy := filepath.Join(t.TempDir(), "policy.json")
			writePolicy(t, policy, `{"callers": {
				"dpo-tool": {"rpcs": ["*"], "purposes": ["*"]},
				"mailer": {"rpcs": ["Check"], "purposes": ["email_marketing"]}
			}}`)
			cfg := testConfig(t)
			cfg.MetricsListen, cfg.HTTP, cfg.LogLevel, cfg.DataDir = "127.0.0.1:0", "127.0.0.1:0", slog.LevelDebug, dataDir
			cfg.TokensFile, cfg.PolicyFile = tokensfile.Write(t, tokens), policy
			var r *redistest.Server
			if tc.redis {
				r = redistest.Start(t, redisproc.Options{})
				secret := filepath.Join(t.TempDir(), "secret")
				if err := os.WriteFile(secret, bytes.Repeat([]byte("k"), 32), 0o600); err != nil {
					t.Fatal(err)
				}
				cfg.RedisURL, cfg.RedisInit, cfg.SecretFile, cfg.Partitions = "redis://"+r.Addr(), true, secret, 4
			}
			d := startDaemon(t, cfg)
			s := newPIIScanner(piiContacts)
			scrape, responses := drivePII(t, d, tokens)
			s.scan("metrics scrape", []byte(scrape))
			for i, body := range responses {
				s.scan(fmt.Sprintf("unsubscribe HTTP response %d", i), body)
			}
			logs := d.stop(t)
			for i, line := range strings.Split(logs, "\n") {
				s.scan(fmt.Sprintf("log line %d", i+1), []byte(line))
			}
			if tc.redis {
				scanRedis(t, s, r.Client(t))
				// The AOF holds every write ever made, also of keys deleted
				// since (an erased record), in plain RESP.
				if scanDir(t, s, "redis dir", r.Dir) == 0 {
					t.Errorf("redis dir %s has no files to scan", r.Dir)
				}
			}
			// With Redis, the data dir is normally empty; it is scanned all
			// the same, in case something is written there.
			if n := scanDir(t, s, "data dir", dataDir); n == 0 && !tc.redis {
				t.Errorf("data dir %s has no files to scan", dataDir)
			}
			if !strings.Contains(logs, `"msg":"permission denied"`) || !strings.Contains(logs, `"code":"InvalidArgument"`) {
				t.Errorf("the logs lack the denial or the bad input this test scans:\n%s", logs)
			}
			for _, f := range s.found {
				t.Errorf("raw contact found in %s", f)
			}
			t.Logf("scanned %d sources for %d forms of %d contacts", s.scanned, len(s.needles), len(piiContacts))
		})
	}
}

// drivePII makes every RPC with every test contact, as the callers of
// tokens, and returns the /metrics scrape taken at the end and the bodies
// of the unsubscribe pages.
func drivePII(t *testing.T, d *daemon, tokens map[string]string) (scrape string, pages [][]byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dpo := piiClient(t, d.addr, tokens["dpo-tool"])
	mailer := piiClient(t, d.addr, tokens["mailer"])
	// must fails the test when a call that should succeed does not: the
	// scan of a run whose writes failed would prove nothing.
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	// want checks a call that should fail fails with code.
	want := func(what string, err error, code codes.Code) {
		t.Helper()
		if got := codeOf(err); got != code {
			t.Errorf("%s: code %v (%v), want %v", what, got, err, code)
		}
	}
	filter := func(c *client.Client, purpose string, contacts []string) error {
		_, err := c.Filter(ctx, purpose, slices.Values(contacts), func(string) error { return nil })
		return err
	}

	for i, contact := range piiContacts {
		tok, err := dpo.Grant(ctx, &pb.GrantRequest{Contact: contact, Purposes: []string{"email_marketing", "sales_outreach"},
			Method: pb.Method_METHOD_DOUBLE_OPT_IN, Source: pb.Source_SOURCE_FIRST_PARTY, NoticeVersion: "2026-05",
			EvidenceRef: fmt.Sprintf("form:signup-%d", i), Actor: "pii-test"})
		must("Grant", err)
		dec, err := dpo.Check(ctx, contact, "email_marketing", client.AtLeastAsFresh(tok))
		must("Check", err)
		if !dec.Allowed {
			t.Fatalf("Check of a granted contact %d: %+v, want allowed", i, dec)
		}
		_, err = mailer.Check(ctx, contact, "email_marketing", client.FullyConsistent())
		must("entitled Check", err)
		_, err = dpo.GetContact(ctx, contact)
		must("GetContact", err)
		n := 0
		for _, err := range dpo.ListEvents(ctx, contact) {
			must("ListEvents", err)
			n++
		}
		if n == 0 {
			t.Errorf("ListEvents of contact %d: no events", i)
		}
	}
	_, err := dpo.BatchCheck(ctx, "email_marketing", piiContacts)
	must("BatchCheck", err)
	must("FilterAudience", filter(dpo, "email_marketing", piiContacts))

	// Denied: outside the mailer's purposes and RPCs.
	_, err = mailer.Check(ctx, piiContacts[0], "sales_outreach")
	want("Check outside the caller's purposes", err, codes.PermissionDenied)
	_, err = mailer.Grant(ctx, &pb.GrantRequest{Contact: piiContacts[1], Purposes: []string{"email_marketing"}, Method: pb.Method_METHOD_CHECKBOX})
	want("Grant by a caller without it", err, codes.PermissionDenied)
	want("FilterAudience by a caller without it", filter(mailer, "email_marketing", piiContacts), codes.PermissionDenied)

	// Bad input around a good contact, and bad contacts that contain a
	// test address: the errors must not echo them.
	bad := "\x01" + strings.TrimSpace(piiContacts[0])
	_, err = dpo.Check(ctx, piiContacts[0], "no_such_purpose")
	want("Check of an unknown purpose", err, codes.InvalidArgument)
	_, err = dpo.Check(ctx, bad, "email_marketing")
	want("Check of a contact with a control character", err, codes.InvalidArgument)
	_, err = dpo.BatchCheck(ctx, "email_marketing", []string{piiContacts[1], strings.TrimSpace(piiContacts[2]) + "\x7f"})
	want("BatchCheck with a bad contact", err, codes.InvalidArgument)
	_, err = dpo.Grant(ctx, &pb.GrantRequest{Contact: piiContacts[2], Purposes: []string{"email_marketing"}})
	want("Grant without a method", err, codes.InvalidArgument)
	_, err = dpo.Grant(ctx, &pb.GrantRequest{Contact: bad, Purposes: []string{"email_marketing"}, Method: pb.Method_METHOD_CHECKBOX})
	want("Grant of a contact with a control character", err, codes.InvalidArgument)
	_, err = dpo.Withdraw(ctx, &pb.WithdrawRequest{Contact: piiContacts[3], Purposes: []string{"email_marketing", "email_marketing"}})
	want("Withdraw naming a purpose twice", err, codes.InvalidArgument)
	_, err = dpo.UnsubscribeURL(ctx, "http://"+d.http(t), bad, "email_marketing")
	want("MintUnsubscribe of a contact with a control character", err, codes.InvalidArgument)
	_, err = dpo.GetContact(ctx, strings.Repeat(strings.TrimSpace(piiContacts[4]), 200))
	want("GetContact of a contact too long", err, codes.InvalidArgument)
	err = filter(dpo, "email_marketing", []string{piiContacts[0], bad})
	if err != nil {
		want("FilterAudience with a bad contact", err, codes.InvalidArgument)
	}

	// A person: two contacts linked (both kept to the end, so their links
	// are at rest when the files are scanned), read person-wide, and a
	// rectification from one to the other.
	_, err = dpo.LinkIdentifiers(ctx, &pb.LinkIdentifiersRequest{Contact: piiContacts[1], Others: []string{piiContacts[3]}, Actor: "pii-test"})
	must("LinkIdentifiers", err)
	person, err := dpo.GetContact(ctx, piiContacts[3], client.WholePerson())
	must("GetContact of the person", err)
	for _, o := range person.GetPerson() {
		for _, err := range dpo.ListEvents(ctx, piiContacts[3], client.LinkedIdentifier(o.GetIdentifier().GetKey())) {
			must("ListEvents of a linked identifier", err)
		}
	}
	_, err = dpo.Rectify(ctx, &pb.RectifyRequest{OldContact: piiContacts[3], NewContact: piiContacts[1], Actor: "pii-test", EvidenceRef: "ticket:1"})
	must("Rectify", err)

	// Withdrawals: one purpose over gRPC, one by a one-click link (the
	// page shown and the POST), and everything by Erase.
	_, err = dpo.Withdraw(ctx, &pb.WithdrawRequest{Contact: piiContacts[0], Purposes: []string{"sales_outreach"}, Actor: "pii-test"})
	must("Withdraw", err)
	// A client of its own, its idle connections closed before the leak
	// check runs.
	hc := &http.Client{Timeout: 10 * time.Second}
	defer hc.CloseIdleConnections()
	for _, contact := range piiContacts[1:3] {
		link, err := dpo.UnsubscribeURL(ctx, "http://"+d.http(t), contact, "email_marketing")
		must("MintUnsubscribe", err)
		pages = append(pages, httpDo(t, hc, http.MethodGet, link), httpDo(t, hc, http.MethodPost, link))
	}
	for i, contact := range piiContacts {
		if i%2 == 0 {
			_, err := dpo.Erase(ctx, &pb.EraseRequest{Contact: contact, Actor: "dpo"})
			must("Erase", err)
		}
	}
	// A re-import of an erased contact, refused or not, is one more path
	// that could log it.
	_, err = dpo.Grant(ctx, &pb.GrantRequest{Contact: piiContacts[0], Purposes: []string{"email_marketing"}, Method: pb.Method_METHOD_CHECKBOX})
	t.Logf("Grant after Erase: %v", codeOf(err))
	_, err = dpo.BatchCheck(ctx, "email_marketing", piiContacts, client.FullyConsistent())
	must("BatchCheck after Erase", err)

	scrape, _ = promscrape.Scrape(t, d.metrics)
	return scrape, pages
}

func piiClient(t *testing.T, addr, token string) *client.Client {
	t.Helper()
	c, err := client.New(addr, client.WithBearerToken(token), client.WithTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// httpDo sends a one-click unsubscribe request as a mail client does and
// returns the page, which must be a 200.
func httpDo(t *testing.T, hc *http.Client, method, link string) []byte {
	t.Helper()
	var body io.Reader
	if method == http.MethodPost {
		body = strings.NewReader("List-Unsubscribe=One-Click")
	}
	req, err := http.NewRequest(method, link, body)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: %s\n%s", method, link, resp.Status, b)
	}
	return b
}

// http returns the unsubscribe listener's address from the serving line.
func (d *daemon) http(t *testing.T) string {
	t.Helper()
	for line := range strings.Lines(d.logs.String()) {
		if _, rest, ok := strings.Cut(line, `"msg":"consentd serving"`); ok {
			if _, addr, ok := strings.Cut(rest, `"http":"`); ok {
				addr, _, _ = strings.Cut(addr, `"`)
				return addr
			}
		}
	}
	t.Fatalf("consentd serving logged no http address:\n%s", d.logs)
	return ""
}

// scanDir scans the raw bytes of every file under dir and returns how many
// it scanned.
func scanDir(t *testing.T, s *piiScanner, name, dir string) (files int) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		s.scan(name+" "+rel, b)
		files++
		return nil
	})
	if err != nil {
		t.Fatalf("scanning %s: %v", dir, err)
	}
	return files
}

// scanRedis scans every key in the database and every value, read by its
// type: an unknown type fails the test rather than go unscanned.
func scanRedis(t *testing.T, s *piiScanner, rc *redis.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	keys := 0
	iter := rc.Scan(ctx, 0, "*", 1000).Iterator()
	for iter.Next(ctx) {
		key := iter.Val()
		keys++
		s.scan("redis key", []byte(key))
		typ, err := rc.Type(ctx, key).Result()
		if err != nil {
			t.Fatalf("TYPE %q: %v", key, err)
		}
		where := fmt.Sprintf("redis %s %q", typ, key)
		var vals []string
		switch typ {
		case "string":
			v, err := rc.Get(ctx, key).Result()
			if err != nil {
				t.Fatalf("GET %q: %v", key, err)
			}
			vals = []string{v}
		case "hash":
			m, err := rc.HGetAll(ctx, key).Result()
			if err != nil {
				t.Fatalf("HGETALL %q: %v", key, err)
			}
			for f, v := range m {
				vals = append(vals, f, v)
			}
		case "list":
			if vals, err = rc.LRange(ctx, key, 0, -1).Result(); err != nil {
				t.Fatalf("LRANGE %q: %v", key, err)
			}
		case "set":
			if vals, err = rc.SMembers(ctx, key).Result(); err != nil {
				t.Fatalf("SMEMBERS %q: %v", key, err)
			}
		case "zset":
			if vals, err = rc.ZRange(ctx, key, 0, -1).Result(); err != nil {
				t.Fatalf("ZRANGE %q: %v", key, err)
			}
		case "stream":
			msgs, err := rc.XRange(ctx, key, "-", "+").Result()
			if err != nil {
				t.Fatalf("XRANGE %q: %v", key, err)
			}
			for _, m := range msgs {
				for f, v := range m.Values {
					vals = append(vals, f, fmt.Sprint(v))
				}
			}
		case "none": // deleted since SCAN returned it
		default:
			t.Errorf("redis key %q has type %s, which this scan cannot read", key, typ)
		}
		for _, v := range vals {
			s.scan(where, []byte(v))
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatalf("SCAN: %v", err)
	}
	if keys == 0 {
		t.Fatal("redis holds no keys: nothing was written")
	}
	t.Logf("scanned %d redis keys", keys)
}

// TestPIINeedles pins the forms looked for of one contact.
func TestPIINeedles(t *testing.T) {
	var got []string
	for _, n := range piiNeedles([]string{" Zoë.Tester+pii@Example.COM "}) {
		got = append(got, n.form+": "+n.text)
	}
	nfd := norm.NFD.String
	want := []string{
		"raw:  zoë.tester+pii@example.com ",
		"raw: " + nfd(" zoë.tester+pii@example.com "),
		"trimmed: zoë.tester+pii@example.com",
		"trimmed: " + nfd("zoë.tester+pii@example.com"),
		"URL-escaped: +zo%c3%ab.tester%2bpii%40example.com+",
		"URL-escaped: %20zo%c3%ab.tester+pii@example.com%20",
		"URL-escaped: zo%c3%ab.tester%2bpii%40example.com",
		"URL-escaped: zo%c3%ab.tester+pii@example.com",
		"URL-escaped: +zoe%cc%88.tester%2bpii%40example.com+",
		"URL-escaped: %20zoe%cc%88.tester+pii@example.com%20",
		"URL-escaped: zoe%cc%88.tester%2bpii%40example.com",
		"URL-escaped: zoe%cc%88.tester+pii@example.com",
		"local part: zoë.tester+pii",
		"local part: " + nfd("zoë.tester+pii"),
		"plain local part: zoë.tester",
		"plain local part: " + nfd("zoë.tester"),
		"ASCII run of the local part: .tester+pii",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("needles (-want +got):\n%s", diff)
	}
}
