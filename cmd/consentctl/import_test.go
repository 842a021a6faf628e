package main

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/consentd/consentd/client"
	"github.com/consentd/consentd/consent"
	"github.com/consentd/consentd/internal/daemontest"
	pb "github.com/consentd/consentd/proto/consent/v1"
)

// handInput is a small CRM export with one row of every outcome; recent is
// a date inside every window. gus@example.com is erased before the import.
func handInput(recent string) string {
	return `contact,purpose,status,method,source,third_party,captured_at,last_engaged_at,notice_version,evidence_ref,bundled
ada@example.com,email_marketing,granted,checkbox,,,` + recent + `,,v1,form:1,
 Bo@Example.com ,email_marketing,granted,,,,` + recent + `,,,,
cy@example.com,email_marketing,granted,checkbox,third_party,ListCo,` + recent + `,,,,
dee@example.com,sales_outreach,granted,button,,,` + recent + `,,,,true
eve@example.com,ad_retargeting,granted,verbal,,,2020-01-10,,,,
fay@example.com,sales_outreach,withdrawn,,,,,,,,
gus@example.com,email_marketing,granted,checkbox,,,` + recent + `,,,,
hal@example.com,market_research,,,,,,,,,
bad,email_marketing,granted,checkbox,,,` + recent + `,,,,
ivy@example.com,newsletter,granted,checkbox,,,` + recent + `,,,,
jo@example.com,email_marketing,granted,checkbox,,,31/12/2020,,,,
kit@example.com,email_marketing,granted
"lou@example.com",market_research,granted,email_reply,first_party,,` + recent + `T10:00:00+02:00,` + recent + `,"v2","scan ""paper, 2024""",false
Max@Example.com,ad_retargeting,Withdrawn,email_reply,,,2025-01-01,,,,
nia@example.com,market_research,,,,,,,"a notice
on two lines",,
oli@example.com,sales_outreach,,,,,,,,,
`
}

// handReport is report.txt for handInput imported into dir.
func handReport(dir string, dryRun bool) string {
	imported := "imported: 2 grants, 2 withdrawals"
	if dryRun {
		imported = "dry run: nothing imported"
	}
	return `PURPOSE          VALID  WITHDRAWN  SUPPRESSED  NO_RECORD  METHOD_UNRECORDED  THIRD_PARTY  NOT_SPECIFIC  STALE
email_marketing  1      0          1           0          1                  1            0             0
sales_outreach   0      1          0           1          0                  0            1             0
market_research  1      0          0           1          0                  0            0             0
ad_retargeting   0      1          0           0          0                  0            0             1
total            2      2          1           2          1                  1            1             1
rejected: 5 rows (` + dir + `/rejects.csv)
` + imported + `
re-permission segments: ` + dir + `/repermission/
`
}

func handReportJSON(file string, dryRun bool) string {
	grants, withdrawals := 2, 2
	if dryRun {
		grants, withdrawals = 0, 0
	}
	counts := func(valid, withdrawn, suppressed, noRecord, method, third, notSpecific, stale int) string {
		return fmt.Sprintf(`{
      "valid": %d,
      "withdrawn": %d,
      "suppressed": %d,
      "no_record": %d,
      "method_unrecorded": %d,
      "third_party": %d,
      "not_specific": %d,
      "stale": %d
    }`, valid, withdrawn, suppressed, noRecord, method, third, notSpecific, stale)
	}
	return fmt.Sprintf(`{
  "file": %q,
  "dry_run": %v,
  "rows": 16,
  "rejected": 5,
  "purposes": {
    "email_marketing": %s,
    "sales_outreach": %s,
    "market_research": %s,
    "ad_retargeting": %s
  },
  "imported": {
    "grants": %d,
    "withdrawals": %d
  },
  "elapsed_seconds": ELAPSED,
  "rows_per_second": RATE
}
`, file, dryRun, counts(1, 0, 1, 0, 1, 1, 0, 0), counts(0, 1, 0, 1, 0, 0, 1, 0),
		counts(1, 0, 0, 1, 0, 0, 0, 0), counts(0, 1, 0, 0, 0, 0, 0, 1), grants, withdrawals)
}

var timings = regexp.MustCompile(`("elapsed_seconds": )[0-9.e+-]+(,\n  "rows_per_second": )[0-9.e+-]+`)

// readDir returns every file under dir by its slash path, with its content;
// report.json's timings are replaced by ELAPSED and RATE.
func readDir(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		s := string(b)
		if rel == "report.json" {
			s = timings.ReplaceAllString(s, "${1}ELAPSED${2}RATE")
		}
		out[filepath.ToSlash(rel)] = s
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// wantHandFiles is every file the import of handInput leaves in dir.
func wantHandFiles(file, dir string, dryRun bool) map[string]string {
	return map[string]string{
		"report.json": handReportJSON(file, dryRun),
		"report.txt":  handReport(dir, dryRun),
		"rejects.csv": `line,reason
10,contact: not an email address or phone number
11,"purpose: unknown purpose ""newsletter"""
12,"captured_at: cannot parse ""31/12/2020"" (want RFC 3339 or YYYY-MM-DD)"
13,"row: has 3 fields, the header has 11"
16,notice_version: must not contain control characters
`,
		"repermission/email_marketing.method_unrecorded.csv": "contact,line\n\" Bo@Example.com \",3\n",
		"repermission/email_marketing.third_party.csv":       "contact,line\ncy@example.com,4\n",
		"repermission/sales_outreach.not_specific.csv":       "contact,line\ndee@example.com,5\n",
		"repermission/ad_retargeting.stale.csv":              "contact,line\neve@example.com,6\n",
		"repermission/market_research.no_record.csv":         "contact,line\nhal@example.com,9\n",
		"repermission/sales_outreach.no_record.csv":          "contact,line\noli@example.com,18\n",
	}
}

// decisions asks consentd about each (contact, purpose).
func decisions(t *testing.T, c *client.Client, pairs [][2]string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, p := range pairs {
		d, err := c.Check(testCtx(t), p[0], p[1], client.FullyConsistent())
		if err != nil {
			t.Fatal(err)
		}
		out[p[0]+" "+p[1]] = d.Reason.String()
	}
	return out
}

func countEvents(t *testing.T, c *client.Client) int {
	t.Helper()
	resp, err := c.VerifyHistory(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if !resp.GetIntact() {
		t.Fatalf("history not intact: %v", resp)
	}
	n := 0
	for _, p := range resp.GetPartitions() {
		n += int(p.GetEvents())
	}
	return n
}

// TestImportReportFiles imports a small hand-made file with one row of each
// outcome into each store and compares every file of the report, what
// Check answers afterwards, and a re-run, which must report the same and
// apply nothing twice.
func TestImportReportFiles(t *testing.T) {
	recent := time.Now().AddDate(0, -2, 0).Format(time.DateOnly)
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			addr := b.start(t)
			c := daemontest.Client(t, addr)
			mustRun(t, addr, "erase", "gus@example.com")
			dir := t.TempDir()
			file := filepath.Join(dir, "crm.csv")
			if err := os.WriteFile(file, []byte(handInput(recent)), 0o644); err != nil {
				t.Fatal(err)
			}
			r := at(t, addr, "import", file)
			if r.code != 0 {
				t.Fatalf("import: exit %d, stderr %q", r.code, r.stderr)
			}
			out := file + ".report"
			if diff := cmp.Diff(wantHandFiles(file, out, false), readDir(t, out)); diff != "" {
				t.Errorf("report files (-want +got):\n%s", diff)
			}
			if r.stdout != handReport(out, false) {
				t.Errorf("stdout is not report.txt:\n%s", r.stdout)
			}
			// The report names contacts: only its owner may read it.
			err := filepath.WalkDir(out, func(path string, d fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				info, err := d.Info()
				if err != nil {
					return err
				}
				if want := map[bool]os.FileMode{true: 0o700, false: 0o600}[d.IsDir()]; path != out && info.Mode().Perm() != want {
					t.Errorf("%s has mode %v, want %v", path, info.Mode().Perm(), want)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if !regexp.MustCompile(`^import: done: 16 rows in \S+ \(\d+ rows/s\)\n$`).MatchString(r.stderr) {
				t.Errorf("stderr %q, want only the final progress line", r.stderr)
			}
			// Only valid and withdrawn rows became consent; the rest did not.
			want := map[string]string{
				"ada@example.com email_marketing": "granted",
				"bo@example.com email_marketing":  "no_consent",
				"cy@example.com email_marketing":  "no_consent",
				"dee@example.com sales_outreach":  "no_consent",
				"eve@example.com ad_retargeting":  "no_consent",
				"fay@example.com sales_outreach":  "withdrawn",
				"gus@example.com email_marketing": "erased",
				"hal@example.com market_research": "no_consent",
				"ivy@example.com email_marketing": "no_consent",
				"jo@example.com email_marketing":  "no_consent",
				"kit@example.com email_marketing": "no_consent",
				"lou@example.com market_research": "granted",
				"lou@example.com email_marketing": "no_consent",
				"max@example.com ad_retargeting":  "withdrawn",
			}
			var pairs [][2]string
			for k := range want {
				contact, purpose, _ := strings.Cut(k, " ")
				pairs = append(pairs, [2]string{contact, purpose})
			}
			if diff := cmp.Diff(want, decisions(t, c, pairs)); diff != "" {
				t.Errorf("Check after the import (-want +got):\n%s", diff)
			}
			// The valid grant keeps its proof.
			state, err := c.GetContact(testCtx(t), "lou@example.com")
			if err != nil {
				t.Fatal(err)
			}
			g := state.GetPurposes()[2].GetGrant()
			if g.GetMethod() != pb.Method_METHOD_EMAIL_REPLY || g.GetNoticeVersion() != "v2" || g.GetEvidenceRef() != `scan "paper, 2024"` ||
				g.GetActor() != defaultImportActor || g.GetCapturedAt().AsTime().Format(time.RFC3339) != recent+"T08:00:00Z" {
				t.Errorf("lou's market_research grant: %v", g)
			}
			events := countEvents(t, c)
			if events != 1+4 {
				t.Errorf("%d events after the import, want 5 (an erasure, 2 grants, 2 withdrawals)", events)
			}

			// Again, into the same report directory: the same report, and
			// nothing applied twice.
			if r := at(t, addr, "import", file); r.code != 0 {
				t.Fatalf("re-run: exit %d, stderr %q", r.code, r.stderr)
			}
			if diff := cmp.Diff(wantHandFiles(file, out, false), readDir(t, out)); diff != "" {
				t.Errorf("report files after the re-run (-want +got):\n%s", diff)
			}
			if got := countEvents(t, c); got != events {
				t.Errorf("%d events after the re-run, want %d", got, events)
			}
		})
	}
}

// A dry run writes the same report and nothing into consentd.
func TestImportDryRun(t *testing.T) {
	recent := time.Now().AddDate(0, -2, 0).Format(time.DateOnly)
	addr := daemontest.Start(t, "--data-dir", t.TempDir()).Addr
	c := daemontest.Client(t, addr)
	mustRun(t, addr, "erase", "gus@example.com")
	dir := t.TempDir()
	file := filepath.Join(dir, "crm.csv")
	if err := os.WriteFile(file, []byte(handInput(recent)), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "dry")
	r := at(t, addr, "import", "--dry-run", file, "--out", out, "--json")
	if r.code != 0 {
		t.Fatalf("import --dry-run: exit %d, stderr %q", r.code, r.stderr)
	}
	files := readDir(t, out)
	if diff := cmp.Diff(wantHandFiles(file, out, true), files); diff != "" {
		t.Errorf("report files (-want +got):\n%s", diff)
	}
	if got := timings.ReplaceAllString(r.stdout, "${1}ELAPSED${2}RATE"); got != files["report.json"] {
		t.Errorf("--json stdout is not report.json:\n%s", r.stdout)
	}
	if got := countEvents(t, c); got != 1 {
		t.Errorf("%d events after a dry run, want 1 (the erasure)", got)
	}
}

// One column per purpose (a mapping file) and renamed columns (--map over
// the file), with the import's other flags.
func TestImportPurposeColumns(t *testing.T) {
	recent := time.Now().AddDate(0, -1, 0).Format(time.DateOnly)
	addr := daemontest.Start(t, "--data-dir", t.TempDir()).Addr
	c := daemontest.Client(t, addr)
	dir := t.TempDir()
	file := filepath.Join(dir, "crm.txt")
	input := "\xef\xbb\xbfEmail,Newsletter,Calls OK,How,Opt-in date,Signup date\n" +
		"ada@example.com,granted,withdrawn,checkbox,," + recent + "\n" +
		"bo@example.com,,granted,,," + recent + "\n" +
		"cy@example.com,yes,granted,button,," + recent + "\n"
	if err := os.WriteFile(file, []byte(input), 0o644); err != nil {
		t.Fatal(err)
	}
	mapping := filepath.Join(dir, "mapping.json")
	if err := os.WriteFile(mapping, []byte(`{"fields": {"contact": "Email", "method": "How", "captured_at": "Opt-in date"},
		"purpose_columns": {"email_marketing": "Newsletter", "sales_outreach": "calls ok"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	r := at(t, addr, "import", file, "--mapping", mapping, "--map", "captured_at=Signup date", "--out", out,
		"--batch", "1", "--in-flight", "3", "--actor", "migration-2026")
	if r.code != 0 {
		t.Fatalf("import: exit %d, stderr %q", r.code, r.stderr)
	}
	files := readDir(t, out)
	want := map[string]string{
		"rejects.csv": "line,reason\n4,\"email_marketing: unknown status \"\"yes\"\" (want granted, withdrawn or empty)\"\n",
		"repermission/email_marketing.no_record.csv":        "contact,line\nbo@example.com,3\n",
		"repermission/sales_outreach.method_unrecorded.csv": "contact,line\nbo@example.com,3\n",
	}
	for name, content := range want {
		if files[name] != content {
			t.Errorf("%s:\n%s\nwant:\n%s", name, files[name], content)
		}
	}
	if !strings.Contains(files["report.txt"], "imported: 2 grants, 1 withdrawals\n") {
		t.Errorf("report.txt:\n%s", files["report.txt"])
	}
	got := decisions(t, c, [][2]string{{"ada@example.com", "email_marketing"}, {"ada@example.com", "sales_outreach"},
		{"cy@example.com", "email_marketing"}, {"cy@example.com", "sales_outreach"}})
	if diff := cmp.Diff(map[string]string{
		"ada@example.com email_marketing": "granted", "ada@example.com sales_outreach": "withdrawn",
		"cy@example.com email_marketing": "no_consent", "cy@example.com sales_outreach": "granted",
	}, got); diff != "" {
		t.Errorf("Check after the import (-want +got):\n%s", diff)
	}
	if h := mustRun(t, addr, "--json", "history", "ada@example.com"); !strings.Contains(h, `"actor": "migration-2026"`) {
		t.Errorf("history lacks the --actor:\n%s", h)
	}
}

// Bad flags and mappings are exit 2 with a message naming the flag; so is
// a file that cannot be read and a consentd that is not there.
func TestImportErrors(t *testing.T) {
	addr := daemontest.Start(t, "--data-dir", t.TempDir()).Addr
	dir := t.TempDir()
	file := filepath.Join(dir, "crm.csv")
	if err := os.WriteFile(file, []byte("Email,Purpose\na@b.co,email_marketing\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	nocontact := filepath.Join(dir, "nopurpose.csv")
	if err := os.WriteFile(nocontact, []byte("contact,status\na@b.co,granted\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mapping := filepath.Join(dir, "m.json")
	if err := os.WriteFile(mapping, []byte(`{"fields": {"contact": "Email"}, "purpose_columns": {"sms": "Purpose"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{file, "--batch", "0"}, "--batch must be between 1 and 10000, got 0"},
		{[]string{file, "--batch", "10001"}, "--batch must be between 1 and 10000, got 10001"},
		{[]string{file, "--in-flight", "0"}, "--in-flight must be at least 1, got 0"},
		{[]string{file, "--format", "xlsx"}, `--format: unknown format "xlsx" (known: csv, ndjson)`},
		{[]string{file, "--map", "email"}, `--map "email": want FIELD=COLUMN`},
		{[]string{file, "--map", "mail=Email"}, `--map mail=Email: unknown field "mail"`},
		{[]string{file}, `no contact column: the header has no "contact" column (name yours with --map contact=COLUMN)`},
		{[]string{file, "--map", "contact=E-mail"}, `--map contact=E-mail: the header has no column "E-mail"`},
		{[]string{nocontact}, `no purpose column: the header has no "purpose" column`},
		{[]string{file, "--mapping", mapping}, `--mapping ` + mapping + `: purpose_columns: unknown purpose "sms"`},
		{[]string{file, "--mapping", filepath.Join(dir, "missing.json")}, "--mapping: open "},
		{[]string{filepath.Join(dir, "missing.csv")}, "open " + filepath.Join(dir, "missing.csv")},
	} {
		r := at(t, addr, append([]string{"import"}, tt.args...)...)
		if r.code != exitError || !strings.HasPrefix(r.stderr, "consentctl import: ") || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("import %v: exit %d, stderr %q; want exit 2 and %q", tt.args, r.code, r.stderr, tt.want)
		}
	}
	r := at(t, daemontest.DeadAddr(t), "import", file, "--map", "contact=Email")
	if r.code != exitError || !strings.Contains(r.stderr, "could not reach consentd") {
		t.Errorf("import into no consentd: exit %d, stderr %q", r.code, r.stderr)
	}
	// A missing file is named first, whether consentd answers or not.
	missing := filepath.Join(dir, "missing.csv")
	r = at(t, daemontest.DeadAddr(t), "import", missing)
	if r.code != exitError || !strings.Contains(r.stderr, "open "+missing) {
		t.Errorf("import of a missing file into no consentd: exit %d, stderr %q; want the file named", r.code, r.stderr)
	}
}

func TestImportExportHelp(t *testing.T) {
	r := ctl(t, nil, "help")
	for _, want := range []string{"  import FILE ", "  export CONTACT "} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("help lacks %q:\n%s", want, r.stdout)
		}
	}
	r = ctl(t, nil, "help", "import")
	for _, want := range []string{"--map FIELD=COLUMN", "--mapping FILE", "--out DIR", "--dry-run", "--batch N", "--in-flight N", "--actor NAME", "--format FORMAT"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("help import lacks %q:\n%s", want, r.stdout)
		}
	}
}

// export prints what consentd holds about a contact, as JSON, always.
func TestExport(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			addr := b.start(t)
			mustRun(t, addr, "grant", "Ada@Example.com", "email_marketing", "--method", "checkbox", "--notice", "v1",
				"--evidence", "form:1", "--captured-at", "2026-01-10", "--request-id", "g1")
			mustRun(t, addr, "withdraw", "ada@example.com", "email_marketing", "--request-id", "w1")
			var got struct {
				Contact          string            `json:"contact"`
				ExportedAt       time.Time         `json:"exported_at"`
				ErasedAt         *string           `json:"erased_at"`
				ConsistencyToken string            `json:"consistency_token"`
				Purposes         []json.RawMessage `json:"purposes"`
				History          []json.RawMessage `json:"history"`
			}
			out := mustRun(t, addr, "export", " Ada@Example.com")
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatalf("export output: %v\n%s", err, out)
			}
			if got.Contact != " Ada@Example.com" || time.Since(got.ExportedAt) > time.Minute || got.ErasedAt != nil ||
				got.ConsistencyToken == "" || len(got.Purposes) != len(consent.DefaultPurposes()) || len(got.History) != 2 {
				t.Errorf("export:\n%s", out)
			}
			for _, want := range []string{`"purpose": "email_marketing"`, `"reason": "REASON_WITHDRAWN"`, `"evidenceRef": "form:1"`,
				`"kind": "EVENT_KIND_GRANT"`, `"kind": "EVENT_KIND_WITHDRAW"`, `"requestId": "g1"`} {
				if !strings.Contains(out, want) {
					t.Errorf("export lacks %s:\n%s", want, out)
				}
			}
			// The same shape as history --json's events.
			hist := mustRun(t, addr, "--json", "history", "ada@example.com")
			var h struct{ Events []json.RawMessage }
			if err := json.Unmarshal([]byte(hist), &h); err != nil {
				t.Fatal(err)
			}
			if len(h.Events) != 2 || !jsonEqual(t, h.Events[0], got.History[0]) {
				t.Errorf("export's history differs from history --json:\n%s\n%s", got.History, hist)
			}

			mustRun(t, addr, "erase", "ada@example.com")
			out = mustRun(t, addr, "--json", "export", "ada@example.com")
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatal(err)
			}
			if got.ErasedAt == nil || len(got.History) != 1 || !strings.Contains(out, `"kind": "EVENT_KIND_ERASE"`) {
				t.Errorf("export after erasure:\n%s", out)
			}
			if r := at(t, addr, "export", "not a contact\x01"); r.code != exitError || !strings.Contains(r.stderr, "contact") {
				t.Errorf("export of a malformed contact: exit %d, stderr %q", r.code, r.stderr)
			}
		})
	}
}

func jsonEqual(t *testing.T, a, b json.RawMessage) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatal(err)
	}
	return cmp.Equal(x, y)
}

// A write consentd refuses for a reason other than an erasure ends the
// import with exit 2, naming the line. Here: the same rows recorded under
// another --actor are another request with the same ids, which consentd
// refuses rather than replay.
func TestImportWriteRefused(t *testing.T) {
	addr := daemontest.Start(t, "--data-dir", t.TempDir()).Addr
	dir := t.TempDir()
	file := filepath.Join(dir, "crm.csv")
	if err := os.WriteFile(file, []byte("contact,purpose,status\nada@example.com,email_marketing,withdrawn\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := at(t, addr, "import", file, "--actor", "first"); r.code != 0 {
		t.Fatalf("import: exit %d, stderr %q", r.code, r.stderr)
	}
	r := at(t, addr, "import", file, "--actor", "second")
	if r.code != exitError || !strings.Contains(r.stderr, "consentctl import: "+file+" line 2 (email_marketing): consentd refused the write: ") {
		t.Errorf("import under another actor: exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestImportAlikeRows: rows alike but for their contacts (one form, one
// date, one notice: common in a CRM export) are different requests in the
// caller's one space of request ids, which the contacts' salts from
// consentd keep apart; the same person spelt otherwise is the same request.
// Every contact is granted once, and a re-run applies nothing.
func TestImportAlikeRows(t *testing.T) {
	recent := time.Now().AddDate(0, -2, 0).Format(time.DateOnly)
	input := "contact,purpose,status,method,captured_at,notice_version,evidence_ref\n"
	for _, who := range []string{"ada@example.com", "bo@example.com", "cy@example.com", " Ada@Example.com "} {
		input += who + ",email_marketing,granted,checkbox," + recent + ",v1,form:signup\n"
	}
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			addr := b.start(t)
			c := daemontest.Client(t, addr)
			file := filepath.Join(t.TempDir(), "crm.csv")
			if err := os.WriteFile(file, []byte(input), 0o644); err != nil {
				t.Fatal(err)
			}
			for run := 1; run <= 2; run++ {
				if r := at(t, addr, "import", file); r.code != 0 {
					t.Fatalf("import run %d: exit %d, stderr %q", run, r.code, r.stderr)
				}
				got := decisions(t, c, [][2]string{{"ada@example.com", "email_marketing"}, {"bo@example.com", "email_marketing"}, {"cy@example.com", "email_marketing"}})
				for who, reason := range got {
					if reason != "granted" {
						t.Errorf("run %d: %s %s, want granted", run, who, reason)
					}
				}
				if n := countEvents(t, c); n != 3 {
					t.Errorf("run %d: %d events, want 3 (one grant per person)", run, n)
				}
			}
		})
	}
}

// TestImportExplainsNoRecord: a file whose rows are NO_RECORD because it
// has no status column (a plain contact,purpose list, the common first
// try) gets a summary that says why, which columns would have imported its
// rows and which flag maps them; a file with a status column, whose empty
// cells are a real "no record", does not.
func TestImportExplainsNoRecord(t *testing.T) {
	recent := time.Now().AddDate(0, -2, 0).Format(time.DateOnly)
	addr := daemontest.Start(t, "--data-dir", t.TempDir()).Addr
	why := func(lacking string) string {
		return `why NO_RECORD: the file has no status column, so no row says whether the
person agreed, and nothing was imported. Consent is imported from the columns
that record it: status (granted or withdrawn), method (how the person agreed,
e.g. checkbox), captured_at (when), source (first_party or third_party) and
notice_version (the privacy notice they saw).
This file lacks: ` + lacking + `.
If it has them under other names, map them: --map captured_at="Opt-in date"
(one --map FIELD=COLUMN per column), or --mapping FILE.
`
	}
	for _, tt := range []struct {
		name, file, input string
		args              []string
		noRecord          string // the total's NO_RECORD cell
		want              string // the explanation, "" for none
	}{
		{"a plain list", "list.csv", "contact,purpose\nada@example.com,email_marketing\nbo@example.com,sales_outreach\n",
			nil, "2", why("status, method, captured_at, source, notice_version")},
		{"a plain list, NDJSON", "list.ndjson", `{"contact": "ada@example.com", "purpose": "email_marketing"}` + "\n",
			nil, "1", why("status, method, captured_at, source, notice_version")},
		{"proof without a status", "proof.csv", "contact,purpose,method,captured_at\nada@example.com,email_marketing,checkbox," + recent + "\n",
			nil, "1", why("status, source, notice_version")},
		{"a status column, empty", "empty.csv", "contact,purpose,status\nada@example.com,email_marketing,\n",
			nil, "1", ""},
		{"columns named otherwise, mapped", "crm.csv", "Email,Purpose,Consent,How,Opt-in date\nada@example.com,email_marketing,granted,checkbox," + recent + "\n",
			[]string{"--map", "contact=Email", "--map", "status=Consent", "--map", "method=How", "--map", "captured_at=Opt-in date"}, "0", ""},
		{"every row rejected", "bad.csv", "contact,purpose\nnot an address,email_marketing\n",
			nil, "0", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, tt.file)
			if err := os.WriteFile(file, []byte(tt.input), 0o644); err != nil {
				t.Fatal(err)
			}
			r := at(t, addr, append([]string{"import", file, "--dry-run"}, tt.args...)...)
			if r.code != 0 {
				t.Fatalf("import: exit %d, stderr %q", r.code, r.stderr)
			}
			total := regexp.MustCompile(`(?m)^total +\d+ +\d+ +\d+ +(\d+) `).FindStringSubmatch(r.stdout)
			if total == nil || total[1] != tt.noRecord {
				t.Errorf("total NO_RECORD %v, want %s:\n%s", total, tt.noRecord, r.stdout)
			}
			_, got, _ := strings.Cut(r.stdout, "/repermission/\n")
			if got != tt.want {
				t.Errorf("after the counts:\n%s\nwant:\n%s", got, tt.want)
			}
			if txt, err := os.ReadFile(filepath.Join(file+".report", "report.txt")); err != nil || string(txt) != r.stdout {
				t.Errorf("report.txt is not what import printed (%v):\n%s", err, txt)
			}
		})
	}
}
