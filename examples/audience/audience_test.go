package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/consentd/consentd/client"
	"github.com/consentd/consentd/internal/daemontest"
	"github.com/consentd/consentd/internal/redisproc"
	"github.com/consentd/consentd/internal/redistest"
	pb "github.com/consentd/consentd/proto/consent/v1"
)

const purpose = "ad_retargeting"

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
	took           time.Duration
}

func runAudience(ctx context.Context, stdin io.Reader, args ...string) result {
	var stdout, stderr bytes.Buffer
	start := time.Now()
	code := run(ctx, args, noEnv, stdin, &stdout, &stderr)
	return result{code, stdout.String(), stderr.String(), time.Since(start)}
}

// reasonCounts parses the counts by reason that a run reports at the end.
func reasonCounts(t *testing.T, stderr string) map[string]uint64 {
	t.Helper()
	got := map[string]uint64{}
	for _, m := range regexp.MustCompile(`(?m)^  ([a-z_]+) +([0-9,]+)$`).FindAllStringSubmatch(stderr, -1) {
		n, err := strconv.ParseUint(strings.ReplaceAll(m[2], ",", ""), 10, 64)
		if err != nil {
			t.Fatalf("count %q: %v", m[2], err)
		}
		got[m[1]] = n
	}
	return got
}

func grant(t *testing.T, c *client.Client, req *pb.GrantRequest) {
	t.Helper()
	if req.Method == pb.Method_METHOD_UNSPECIFIED {
		req.Method = pb.Method_METHOD_CHECKBOX
	}
	if _, err := c.Grant(testCtx(t, 30*time.Second), req); err != nil {
		t.Fatalf("Grant(%s): %v", req.GetContact(), err)
	}
}

func TestHeaderDetection(t *testing.T) {
	tests := []struct {
		mode headerMode
		cell string
		want bool
	}{
		{headerAuto, "email", true},
		{headerAuto, "Email Address", true},
		{headerAuto, "contact", true},
		{headerAuto, "e-mail", true},
		{headerAuto, "phone", true},
		{headerAuto, "ada@example.com", false},
		{headerAuto, "  Ada@Example.com ", false},
		{headerAuto, "+44 20 7946 0958", false},
		{headerAuto, "0049301234567", false},
		{headerAuto, "contact1", false}, // a digit: might be a contact; say --header yes
		{headerAuto, "", false},         // an empty first cell is an invalid contact, not a column name
		{headerAuto, "   ", false},
		{headerYes, "ada@example.com", true},
		{headerYes, "", true},
		{headerNo, "email", false},
	}
	for _, tt := range tests {
		if got := tt.mode.isHeader(tt.cell); got != tt.want {
			t.Errorf("%s: isHeader(%q) = %v, want %v", tt.mode, tt.cell, got, tt.want)
		}
	}
}

func TestCommandLine(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
		says string
	}{
		{"help", []string{"--help"}, 0, "--header"},
		{"no purpose", []string{}, 2, "--purpose is required"},
		{"bad header mode", []string{"--purpose", purpose, "--header", "maybe"}, 2, `want auto, yes or no, got "maybe"`},
		{"unknown flag", []string{"--purpose", purpose, "--nope"}, 2, "flag provided but not defined: -nope"},
		{"stray argument", []string{"--purpose", purpose, "contacts.csv"}, 2, "unexpected arguments: contacts.csv (the contacts come on stdin)"},
		{"negative progress", []string{"--purpose", purpose, "--progress", "-1s"}, 2, "--progress must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runAudience(testCtx(t, 10*time.Second), strings.NewReader(""), tt.args...)
			if r.code != tt.code || !strings.Contains(r.stderr, tt.says) || r.stdout != "" {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d mentioning %q", r.code, r.stdout, r.stderr, tt.code, tt.says)
			}
		})
	}
}

// TestUnreachable: a consentd that is not there fails the run at once,
// with one line naming the address, and reads nothing.
func TestUnreachable(t *testing.T) {
	addr := daemontest.DeadAddr(t)
	for _, tt := range []struct {
		name   string
		args   []string
		getenv func(string) string
	}{
		{"--addr", []string{"--addr", addr, "--purpose", purpose}, noEnv},
		{"CONSENTD_ADDR", []string{"--purpose", purpose}, func(k string) string {
			if k == "CONSENTD_ADDR" {
				return addr
			}
			return ""
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			stdin := strings.NewReader("ada@example.com\n")
			var stdout, stderr bytes.Buffer
			start := time.Now()
			code := run(testCtx(t, 30*time.Second), tt.args, tt.getenv, stdin, &stdout, &stderr)
			took := time.Since(start)
			if code != 1 || stdout.Len() != 0 {
				t.Errorf("exit %d, stdout %q; want exit 1 and no output", code, stdout.String())
			}
			msg := stderr.String()
			if !strings.HasPrefix(msg, "audience: cannot use consentd at "+addr+": ") || !strings.Contains(msg, "connection refused") || strings.Count(msg, "\n") != 1 {
				t.Errorf("stderr = %q, want one line naming %s and the refused connection", msg, addr)
			}
			if took > 5*time.Second {
				t.Errorf("took %v to give up on a closed port", took)
			}
			if stdin.Len() == 0 {
				t.Error("read stdin although consentd was unreachable")
			}
		})
	}
}

// TestSmallAudiences runs the command on small inputs against one real
// consentd: header handling, blank lines, extra columns, quoting, invalid
// cells, and the errors.
func TestSmallAudiences(t *testing.T) {
	addr := daemontest.Start(t, "--data-dir", t.TempDir()).Addr
	c := daemontest.Client(t, addr)
	grant(t, c, &pb.GrantRequest{Contact: "ada@example.com", Purposes: []string{purpose}})
	// An external id may hold quotes and commas (an email address may not:
	// no quoted local parts), so CSV quoting is still tried with one.
	grant(t, c, &pb.GrantRequest{Contact: `crm:"cy,d"`, Purposes: []string{purpose}})
	grant(t, c, &pb.GrantRequest{Contact: "bo@example.com", Purposes: []string{"email_marketing"}})

	tests := []struct {
		name    string
		flags   []string
		in      string
		out     string
		reasons map[string]uint64
	}{
		{"header detected", nil, "email,name\nada@example.com,Ada\nbo@example.com,Bo\n", "email\nada@example.com\n",
			map[string]uint64{"granted": 1, "no_consent": 1}},
		{"no header", nil, "ada@example.com\nbo@example.com\n", "ada@example.com\n",
			map[string]uint64{"granted": 1, "no_consent": 1}},
		{"header forced", []string{"--header", "yes"}, "contact1\nada@example.com\n", "contact1\nada@example.com\n",
			map[string]uint64{"granted": 1}},
		{"header refused", []string{"--header", "no"}, "email\nada@example.com\n", "ada@example.com\n",
			map[string]uint64{"granted": 1, "invalid": 1}}, // "email" is no contact
		{"byte order mark and CRLF", nil, "\ufeffEmail\r\nada@example.com\r\n", "Email\nada@example.com\n",
			map[string]uint64{"granted": 1}},
		{"written as given", nil, "ADA@Example.com\n ada@example.com\n", "ADA@Example.com\n\" ada@example.com\"\n",
			map[string]uint64{"granted": 2}},
		{"blank lines and extra columns", nil, "\n\nbo@example.com,1,2,3\n\nada@example.com\n\n", "ada@example.com\n",
			map[string]uint64{"granted": 1, "no_consent": 1}},
		{"quoted cells", nil, "\"crm:\"\"cy,d\"\"\",x\n\"ada@example.com\"\n", "\"crm:\"\"cy,d\"\"\"\nada@example.com\n",
			map[string]uint64{"granted": 2}},
		{"empty and malformed contacts are invalid", nil, ",Ada\n\"   \"\nbad\x01@example.com\nada@example.com\n", "ada@example.com\n",
			map[string]uint64{"granted": 1, "invalid": 3}},
		{"duplicates stay", nil, "ada@example.com\nada@example.com\n", "ada@example.com\nada@example.com\n",
			map[string]uint64{"granted": 2}},
		{"empty input", nil, "", "", map[string]uint64{}},
		{"header only", nil, "email\n", "email\n", map[string]uint64{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"--addr", addr, "--purpose", purpose}, tt.flags...)
			r := runAudience(testCtx(t, 30*time.Second), strings.NewReader(tt.in), args...)
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			if r.stdout != tt.out {
				t.Errorf("stdout = %q, want %q", r.stdout, tt.out)
			}
			if diff := cmp.Diff(tt.reasons, reasonCounts(t, r.stderr)); diff != "" {
				t.Errorf("counts by reason (-want +got):\n%s\nstderr:\n%s", diff, r.stderr)
			}
		})
	}

	t.Run("malformed row", func(t *testing.T) {
		var in strings.Builder
		in.WriteString("email\nada@example.com\n")
		for i := range 5000 {
			fmt.Fprintf(&in, "c%d@example.com\n", i)
		}
		in.WriteString("ab\"c@example.com\nada@example.com\n") // line 5003: a bare quote
		r := runAudience(testCtx(t, 30*time.Second), strings.NewReader(in.String()), "--addr", addr, "--purpose", purpose)
		want := `audience: malformed CSV on stdin: parse error on line 5003, column 3: bare " in non-quoted-field; stopped, the output is incomplete` + "\n"
		if r.code != 1 || r.stderr != want {
			t.Errorf("exit %d, stderr %q; want exit 1 and %q", r.code, r.stderr, want)
		}
		if r.stdout != "" {
			t.Errorf("stdout = %q: a failed run flushed its partial output", r.stdout)
		}
	})
	t.Run("malformed first row", func(t *testing.T) {
		r := runAudience(testCtx(t, 30*time.Second), strings.NewReader("a\"da@example.com\nbo@example.com\n"), "--addr", addr, "--purpose", purpose)
		if r.code != 1 || !strings.HasPrefix(r.stderr, "audience: malformed CSV on stdin: parse error on line 1, column 2: ") || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("exit %d, stderr %q; want exit 1 and a parse error on line 1", r.code, r.stderr)
		}
	})
	t.Run("unknown purpose", func(t *testing.T) {
		r := runAudience(testCtx(t, 30*time.Second), strings.NewReader("ada@example.com\n"), "--addr", addr, "--purpose", "ads")
		want := `audience: consentd: purpose: unknown purpose "ads" (known: email_marketing, sales_outreach, market_research, ad_retargeting)` + "\n"
		if r.code != 1 || r.stderr != want || r.stdout != "" {
			t.Errorf("exit %d, stdout %q, stderr %q; want exit 1 and %q", r.code, r.stdout, r.stderr, want)
		}
	})
	t.Run("unwritable stdout", func(t *testing.T) {
		var in strings.Builder
		for range 20000 { // more than the output buffer holds
			in.WriteString("ada@example.com\n")
		}
		var stderr bytes.Buffer
		code := run(testCtx(t, 30*time.Second), []string{"--addr", addr, "--purpose", purpose}, noEnv, strings.NewReader(in.String()), failingWriter{}, &stderr)
		if code != 1 || !strings.HasPrefix(stderr.String(), "audience: writing stdout: disk full;") {
			t.Errorf("exit %d, stderr %q; want exit 1 and the write error", code, stderr.String())
		}
	})
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, fmt.Errorf("disk full") }

// audience is a generated audience of n contacts (n a multiple of 10,000):
// one row in a thousand is a contact the test grants (some of them then
// withdrawn, stale or from a third party), ten rows are malformed contacts,
// every other row is a contact with no consent. It has a header, extra
// columns, blank lines, and contacts in mixed case or needing quotes.
type audience struct {
	n int
}

// kinds of the granted contacts, by k%20.
func grantedKind(k int) string {
	switch k % 20 {
	case 0:
		return "withdrawn"
	case 1:
		return "stale"
	case 2:
		return "third_party_unconfirmed"
	}
	return "granted"
}

// grantedContact is the k-th granted contact as the test grants it.
func grantedContact(k int) string {
	if k == 7 {
		return fmt.Sprintf(`crm:"quoted,g%04d"`, k)
	}
	return fmt.Sprintf("g%04d@example.com", k)
}

// row returns the i-th row's contact.
func (a audience) row(i int) string {
	if i%1000 == 500 {
		k := i / 1000
		if k%3 == 0 { // as a person typed it: consentd normalises, the output keeps it
			return fmt.Sprintf("G%04d@Example.COM", k)
		}
		return grantedContact(k)
	}
	if i%(a.n/10) == 3 {
		switch (i / (a.n / 10)) % 4 {
		case 0:
			return ""
		case 1:
			return "   "
		case 2:
			return "bad\x01@example.com"
		default:
			return strings.Repeat("x", 320) + "@example.com"
		}
	}
	return fmt.Sprintf("c%07d@example.com", i)
}

// grantAll records the consents the audience expects.
func (a audience) grantAll(t *testing.T, c *client.Client) {
	t.Helper()
	stale := timestamppb.New(time.Now().AddDate(0, -14, 0)) // ad_retargeting asks again after 13 months
	for k := range a.n / 1000 {
		req := &pb.GrantRequest{Contact: grantedContact(k), Purposes: []string{purpose},
			EvidenceRef: fmt.Sprintf("form:%d", k), Actor: "audience-test"}
		switch grantedKind(k) {
		case "stale":
			req.CapturedAt = stale
		case "third_party_unconfirmed":
			req.Source, req.ThirdParty = pb.Source_SOURCE_THIRD_PARTY, "list-broker"
		}
		grant(t, c, req)
		if grantedKind(k) == "withdrawn" {
			if _, err := c.Withdraw(testCtx(t, 30*time.Second), &pb.WithdrawRequest{Contact: grantedContact(k), Purposes: []string{purpose}}); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// write writes the audience as CSV to w.
func (a audience) write(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	cw := csv.NewWriter(bw) // writes straight into bw
	cw.Write([]string{"email", "first_name"})
	for i := range a.n {
		if i%(a.n/4) == 2 {
			cw.Flush()
			bw.WriteString("\n") // a blank line, skipped
		}
		cw.Write([]string{a.row(i), "Name " + strconv.Itoa(i)})
		if err := cw.Error(); err != nil {
			return err
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return err
	}
	return bw.Flush()
}

// want returns the expected output rows and counts by reason.
func (a audience) want() ([][]string, map[string]uint64) {
	rows := [][]string{{"email"}}
	reasons := map[string]uint64{"invalid": 10, "no_consent": uint64(a.n - a.n/1000 - 10)}
	for k := range a.n / 1000 {
		kind := grantedKind(k)
		reasons[kind]++
		if kind == "granted" {
			rows = append(rows, []string{a.row(k*1000 + 500)})
		}
	}
	return rows, reasons
}

// check filters the audience through consentd at addr, the CSV streamed
// through a pipe as it is generated, and compares the output and counts.
func (a audience) check(t *testing.T, addr string) {
	t.Helper()
	pr, pw := io.Pipe()
	generated := make(chan struct{})
	go func() {
		defer close(generated)
		pw.CloseWithError(a.write(pw))
	}()
	r := runAudience(testCtx(t, 5*time.Minute), pr, "--addr", addr, "--purpose", purpose, "--progress", "1s")
	pr.CloseWithError(io.ErrClosedPipe) // a failed run stops reading: unblock the writer
	<-generated
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	t.Logf("%d contacts in %v: %.0f contacts/s\n%s", a.n, r.took, float64(a.n)/r.took.Seconds(), r.stderr)

	got, err := csv.NewReader(strings.NewReader(r.stdout)).ReadAll()
	if err != nil {
		t.Fatalf("output is not CSV: %v", err)
	}
	wantRows, wantReasons := a.want()
	if diff := cmp.Diff(wantRows, got); diff != "" {
		t.Errorf("allowed contacts (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantReasons, reasonCounts(t, r.stderr)); diff != "" {
		t.Errorf("counts by reason (-want +got):\n%s", diff)
	}
	headline := fmt.Sprintf("audience: %s contacts in ", commas(uint64(a.n)))
	if !strings.Contains(r.stderr, headline) || !strings.Contains(r.stderr, fmt.Sprintf(": %s allowed, ", commas(uint64(len(wantRows)-1)))) {
		t.Errorf("stderr lacks the summary %q...:\n%s", headline, r.stderr)
	}
}

// TestMillionContacts filters a 1,000,000-contact audience (fewer under the
// race detector, see race_test.go) through a consentd process on the
// embedded store.
func TestMillionContacts(t *testing.T) {
	addr := daemontest.Start(t, "--data-dir", t.TempDir()).Addr
	a := audience{n: largeAudience}
	start := time.Now()
	a.grantAll(t, daemontest.Client(t, addr))
	t.Logf("granted %d contacts in %v", a.n/1000, time.Since(start))
	a.check(t, addr)
}

// TestRedis filters an audience through a consentd on a real redis-server.
func TestRedis(t *testing.T) {
	srv := redistest.Start(t, redisproc.Options{})
	secret := filepath.Join(t.TempDir(), "consentd.secret")
	if err := os.WriteFile(secret, []byte("the audience test's secret, 0123456789"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := daemontest.Start(t, "--redis", "redis://"+srv.Addr()+"/0", "--redis-init", "--secret-file", secret).Addr
	a := audience{n: 50_000}
	a.grantAll(t, daemontest.Client(t, addr))
	a.check(t, addr)
}
