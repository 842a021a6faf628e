package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/consentd/consentd/client"
	"github.com/consentd/consentd/consent"
	"github.com/consentd/consentd/internal/daemontest"
	"github.com/consentd/consentd/internal/importfixture"
	pb "github.com/consentd/consentd/proto/consent/v1"
)

// The end-to-end tests of import run the generated fixture
// (internal/importfixture), whose every row's outcome is known, against a
// real consentd on each store, and compare everything the import leaves
// behind with what the fixture says: report.json's counts, each segment
// file byte for byte, rejects.csv's lines and the column each reason names,
// what Check answers for every row afterwards, and how many events the
// store holds (every write applied exactly once).

// fixtureRows is the size of the fixture most tests import: the issue asks
// for at least 10,000 rows.
const fixtureRows = 10000

// writeFixture generates a fixture of o into dir and returns its path.
func writeFixture(t *testing.T, dir, name string, o importfixture.Options) (string, importfixture.Expected) {
	t.Helper()
	path := filepath.Join(dir, name)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	exp, err := importfixture.Generate(f, o)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	return path, exp
}

// eraseAll erases contacts in consentd, a few at a time: the people the
// fixture's suppressed rows name, erased here before the import.
func eraseAll(t *testing.T, c *client.Client, contacts []string) {
	t.Helper()
	ctx := testCtx(t)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	next := make(chan string)
	for range 8 {
		wg.Go(func() {
			for contact := range next {
				if _, err := c.Erase(ctx, &pb.EraseRequest{Contact: contact, Actor: "dpo"}); err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("erase %s: %w", contact, err))
					mu.Unlock()
				}
			}
		})
	}
	for _, contact := range contacts {
		next <- contact
	}
	close(next)
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d erasures failed, the first: %v", len(errs), errs[0])
	}
}

// importRun runs `consentctl import` in process and fails the test unless
// it exits 0 with the final progress line.
func importRun(t *testing.T, addr string, args ...string) result {
	t.Helper()
	r := at(t, addr, append([]string{"import"}, args...)...)
	if r.code != 0 {
		t.Fatalf("consentctl import %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	if !doneLine.MatchString(r.stderr) {
		t.Errorf("consentctl import %s: stderr lacks the final line %q:\n%s", strings.Join(args, " "), doneLine, r.stderr)
	}
	return r
}

// doneLine is the last thing an import says on a stderr that is no
// terminal.
var doneLine = regexp.MustCompile(`(?m)^import: done: \d+ rows in \S+ \(\d+ rows/s\)$`)

// readReport reads report.json from dir: its counts, and whether it is a
// dry run. Every registered purpose must be there with every key.
func readReport(t *testing.T, dir string) (importfixture.Report, bool) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep importfixture.Report
	var raw struct {
		DryRun         *bool                                 `json:"dry_run"`
		File           *string                               `json:"file"`
		Purposes       map[string]map[string]json.RawMessage `json:"purposes"`
		ElapsedSeconds *float64                              `json:"elapsed_seconds"`
		RowsPerSecond  *float64                              `json:"rows_per_second"`
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("report.json: %v\n%s", err, b)
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatalf("report.json: %v", err)
	}
	if raw.DryRun == nil || raw.File == nil || raw.ElapsedSeconds == nil || raw.RowsPerSecond == nil {
		t.Errorf("report.json lacks file, dry_run, elapsed_seconds or rows_per_second:\n%s", b)
	}
	keys := append([]string{importfixture.Valid, importfixture.Withdrawn, importfixture.Suppressed}, importfixture.RepermissionReasons()...)
	for _, p := range consent.DefaultPurposes() {
		for _, k := range keys {
			if _, ok := raw.Purposes[p.Name][k]; !ok {
				t.Errorf("report.json: purposes.%s lacks %q", p.Name, k)
			}
		}
	}
	return rep, raw.DryRun != nil && *raw.DryRun
}

// checkReport compares the report in dir with the fixture's. A dry run
// imports nothing: its imported counts are zero.
func checkReport(t *testing.T, dir string, exp importfixture.Expected, dryRun bool) importfixture.Report {
	t.Helper()
	got, gotDry := readReport(t, dir)
	want := exp.Report
	if dryRun {
		want.Imported = importfixture.Imported{}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("report.json counts (-want +got):\n%s", diff)
	}
	if gotDry != dryRun {
		t.Errorf("report.json dry_run = %v, want %v", gotDry, dryRun)
	}
	return got
}

// checkFiles compares the segment files and rejects.csv in dir with the
// fixture's: each segment exactly, no other segment, and rejects.csv's line
// numbers in order, each reason naming the column at fault before its
// colon.
func checkFiles(t *testing.T, dir string, exp importfixture.Expected) {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, "repermission"))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, "repermission", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		got[e.Name()] = string(b)
	}
	for name := range exp.Segments {
		if _, ok := got[name]; !ok {
			t.Errorf("repermission/%s is missing", name)
		}
	}
	for name, content := range got {
		want, ok := exp.Segments[name]
		switch {
		case !ok:
			t.Errorf("repermission/%s should not exist (%d bytes)", name, len(content))
		case content != want:
			t.Errorf("repermission/%s (-want +got):\n%s", name, cmp.Diff(strings.Split(want, "\n"), strings.Split(content, "\n")))
		}
	}
	f, err := os.Open(filepath.Join(dir, "rejects.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatalf("rejects.csv: %v", err)
	}
	if len(recs) == 0 || !slices.Equal(recs[0], []string{"line", "reason"}) {
		t.Fatalf("rejects.csv: want the header line,reason, got %q", recs[:min(len(recs), 1)])
	}
	var gotLines, wantLines []int
	for _, r := range recs[1:] {
		n, _ := strconv.Atoi(r[0])
		gotLines = append(gotLines, n)
	}
	for _, r := range exp.Rejects {
		wantLines = append(wantLines, r.Line)
	}
	if diff := cmp.Diff(wantLines, gotLines); diff != "" {
		t.Fatalf("rejects.csv lines (-want +got):\n%s", diff)
	}
	for i, r := range exp.Rejects {
		reason := recs[i+1][1]
		if col, _, _ := strings.Cut(reason, ":"); r.Field != "" && col != r.Field {
			t.Errorf("rejects.csv line %d: reason %q, want one about %s", r.Line, reason, r.Field)
		}
	}
}

// checkDecisions asks consentd about every row the fixture can check and
// compares each answer with the outcome: granted (ALLOW) for a valid row,
// withdrawn, erased for a suppressed one, no_consent for a re-permission
// or rejected one.
func checkDecisions(t *testing.T, c *client.Client, exp importfixture.Expected) {
	t.Helper()
	ctx := testCtx(t)
	byPurpose := map[string][]importfixture.Row{}
	for _, r := range exp.Rows {
		if r.Check != consent.ReasonUnspecified {
			byPurpose[r.Purpose] = append(byPurpose[r.Purpose], r)
		}
	}
	wrong := 0
	for purpose, rows := range byPurpose {
		for chunk := range slices.Chunk(rows, consent.MaxBatch) {
			contacts := make([]string, len(chunk))
			for i, r := range chunk {
				contacts[i] = r.Contact
			}
			ds, err := c.BatchCheck(ctx, purpose, contacts, client.FullyConsistent())
			if err != nil {
				t.Fatalf("BatchCheck %s: %v", purpose, err)
			}
			for i, d := range ds {
				r := chunk[i]
				want := consent.Decision{Allowed: r.Check == consent.ReasonGranted, Reason: r.Check}
				if d != want {
					if wrong++; wrong <= 20 {
						t.Errorf("line %d %q %s (%s): Check = %v/%v, want %v/%v",
							r.Line, r.Contact, r.Purpose, r.Outcome, d.Allowed, d.Reason, want.Allowed, want.Reason)
					}
				}
			}
		}
	}
	if wrong > 20 {
		t.Errorf("... %d rows in all disagree with the import's decisions", wrong)
	}
}

// eventTotal is the number of events in consentd's history, as verify
// counts them, which must be intact.
func eventTotal(t *testing.T, c *client.Client) int {
	t.Helper()
	resp, err := c.VerifyHistory(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if !resp.GetIntact() {
		t.Fatalf("history not intact: %v", resp)
	}
	var n uint64
	for _, p := range resp.GetPartitions() {
		n += p.GetEvents()
	}
	return int(n)
}

// wantEvents is how many events an import of the fixture leaves: one per
// erasure made before it, one per grant and one per withdrawal, each once.
func wantEvents(exp importfixture.Expected) int {
	return len(exp.Erase) + exp.Report.Imported.Grants + exp.Report.Imported.Withdrawals
}

// historySample returns, for n contacts of the fixture (the first ones in
// file order, every kind), how many events their history holds.
func historySample(t *testing.T, c *client.Client, exp importfixture.Expected, n int) map[string]int {
	t.Helper()
	ctx := testCtx(t)
	out := map[string]int{}
	for _, r := range exp.Rows {
		if len(out) == n {
			break
		}
		contact := strings.ToLower(strings.TrimSpace(r.Contact))
		if _, ok := out[contact]; ok || r.Outcome == importfixture.Rejected {
			continue
		}
		events := 0
		for _, err := range c.ListEvents(ctx, contact) {
			if err != nil {
				t.Fatalf("ListEvents %s: %v", contact, err)
			}
			events++
		}
		out[contact] = events
	}
	return out
}

// wantHistory is what historySample must find after an import: one event
// per imported row of the contact, and one for its erasure.
func wantHistory(exp importfixture.Expected, sample map[string]int) map[string]int {
	want := map[string]int{}
	for contact := range sample {
		want[contact] = 0
	}
	for _, c := range exp.Erase {
		if _, ok := want[c]; ok {
			want[c]++
		}
	}
	for _, r := range exp.Rows {
		contact := strings.ToLower(strings.TrimSpace(r.Contact))
		if _, ok := want[contact]; ok && (r.Outcome == importfixture.Valid || r.Outcome == importfixture.Withdrawn) {
			want[contact]++
		}
	}
	return want
}

// TestImportFixture imports the 10,000-row fixture into each store: first a
// dry run, which must report the same and import nothing, then the import,
// then the same file again, which must report the same and apply nothing
// twice.
func TestImportFixture(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			addr := b.start(t)
			c := daemontest.Client(t, addr)
			dir := t.TempDir()
			file, exp := writeFixture(t, dir, "crm.csv", importfixture.Options{Rows: fixtureRows, Seed: 1, Now: time.Now(), Format: "csv"})
			eraseAll(t, c, exp.Erase)

			dry := filepath.Join(dir, "dry")
			importRun(t, addr, file, "--dry-run", "--out", dry)
			checkReport(t, dry, exp, true)
			checkFiles(t, dry, exp)
			if got, want := eventTotal(t, c), len(exp.Erase); got != want {
				t.Errorf("after the dry run: %d events, want %d (the erasures only)", got, want)
			}

			r := importRun(t, addr, file)
			report := file + ".report" // the default --out
			first := checkReport(t, report, exp, false)
			checkFiles(t, report, exp)
			txt, err := os.ReadFile(filepath.Join(report, "report.txt"))
			if err != nil || r.stdout != string(txt) {
				t.Errorf("stdout is not report.txt (%v):\n%s", err, r.stdout)
			}
			checkDecisions(t, c, exp)
			if got, want := eventTotal(t, c), wantEvents(exp); got != want {
				t.Errorf("after the import: %d events, want %d", got, want)
			}
			sample := historySample(t, c, exp, 250)
			if diff := cmp.Diff(wantHistory(exp, sample), sample); diff != "" {
				t.Errorf("events per contact after the import (-want +got):\n%s", diff)
			}

			// The same file again: the same report, nothing applied twice.
			again := filepath.Join(dir, "again")
			importRun(t, addr, file, "--out", again)
			if second, _ := readReport(t, again); !cmp.Equal(first, second) {
				t.Errorf("re-run report differs (-first +second):\n%s", cmp.Diff(first, second))
			}
			checkFiles(t, again, exp)
			if got, want := eventTotal(t, c), wantEvents(exp); got != want {
				t.Errorf("after the re-run: %d events, want %d", got, want)
			}
			if diff := cmp.Diff(sample, historySample(t, c, exp, 250)); diff != "" {
				t.Errorf("histories grew on the re-run (-before +after):\n%s", diff)
			}
			checkDecisions(t, c, exp)
		})
	}
}

// TestImportNDJSON imports the NDJSON fixture of the same seed: the same
// rows, so the same outcomes, with lines counted from 1 (no header).
func TestImportNDJSON(t *testing.T) {
	addr := daemontest.Start(t, "--data-dir", t.TempDir()).Addr
	c := daemontest.Client(t, addr)
	dir := t.TempDir()
	now := time.Now()
	_, csvExp := writeFixture(t, dir, "crm.csv", importfixture.Options{Rows: fixtureRows, Seed: 1, Now: now, Format: "csv"})
	file, exp := writeFixture(t, dir, "crm.ndjson", importfixture.Options{Rows: fixtureRows, Seed: 1, Now: now, Format: "ndjson"})
	if diff := cmp.Diff(csvExp.Report, exp.Report); diff != "" {
		t.Fatalf("the NDJSON fixture's counts differ from the CSV one's (-csv +ndjson):\n%s", diff)
	}
	eraseAll(t, c, exp.Erase)
	out := filepath.Join(dir, "out")
	r := importRun(t, addr, file, "--format", "ndjson", "--out", out, "--json")
	checkReport(t, out, exp, false)
	checkFiles(t, out, exp)
	checkDecisions(t, c, exp)
	if got, want := eventTotal(t, c), wantEvents(exp); got != want {
		t.Errorf("%d events, want %d", got, want)
	}
	if js, err := os.ReadFile(filepath.Join(out, "report.json")); err != nil || r.stdout != string(js) {
		t.Errorf("with --json, stdout is not report.json (%v):\n%s", err, r.stdout)
	}
	// An import that cannot run is an error, not a report.
	if r := at(t, addr, "import", filepath.Join(dir, "missing.csv")); r.code != exitError || r.stderr == "" {
		t.Errorf("import of a missing file: exit %d, stderr %q; want %d and the reason", r.code, r.stderr, exitError)
	}
}

// raceEnabled reports whether the test binary, and so every consentd it
// starts, runs with the race detector (several times slower).
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" && s.Value == "true" {
			return true
		}
	}
	return false
}

// TestImportKilledAndResumed kills an import (a consentctl process, with
// SIGKILL) once some of its writes have landed, runs it again to the end,
// and compares the result with a clean import of the same file into another
// consentd: the same report, the same answer for every row, and the same
// number of events, which is one per write (nothing applied twice).
func TestImportKilledAndResumed(t *testing.T) {
	rows := 100000
	if raceEnabled() {
		rows = 20000 // consentd runs race-instrumented: a smaller file still gets killed halfway
	}
	bin := filepath.Join(daemontest.Build(t, "."), "consentctl")
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			dir := t.TempDir()
			file, exp := writeFixture(t, dir, "crm.csv", importfixture.Options{Rows: rows, Seed: 2, Now: time.Now(), Format: "csv"})

			killed := b.start(t)
			kc := daemontest.Client(t, killed)
			eraseAll(t, kc, exp.Erase)
			// Small batches make the writes land in many steps, so the kill
			// comes between them.
			cmd := importCommand(t, bin, killed, file, "--out", filepath.Join(dir, "killed"), "--batch", "500", "--in-flight", "2")
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			landed := waitForEvents(t, kc, len(exp.Erase)+1, done)
			if err := cmd.Process.Kill(); err != nil { // by PID
				t.Fatalf("killing consentctl: %v", err)
			}
			<-done
			if cmd.ProcessState.Success() {
				t.Fatalf("the import finished before it was killed (%d events had landed): make the file larger", landed)
			}
			atKill := eventTotal(t, kc)
			if atKill >= wantEvents(exp) {
				t.Fatalf("every write had landed when the import was killed (%d events): make the file larger", atKill)
			}
			t.Logf("killed with %d of %d events written", atKill, wantEvents(exp))

			resumed := filepath.Join(dir, "resumed")
			runCommand(t, bin, killed, file, "--out", resumed)
			checkReport(t, resumed, exp, false)
			checkFiles(t, resumed, exp)

			clean := b.start(t)
			cc := daemontest.Client(t, clean)
			eraseAll(t, cc, exp.Erase)
			once := filepath.Join(dir, "clean")
			runCommand(t, bin, clean, file, "--out", once)
			checkReport(t, once, exp, false)

			for name, c := range map[string]*client.Client{"killed and resumed": kc, "clean": cc} {
				if got, want := eventTotal(t, c), wantEvents(exp); got != want {
					t.Errorf("%s: %d events, want %d", name, got, want)
				}
				checkDecisions(t, c, exp)
			}
		})
	}
}

// importCommand starts the consentctl binary importing file into the
// consentd at addr. The process is killed by PID when the test ends.
func importCommand(t *testing.T, bin, addr, file string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"--addr", addr, "import", file}, args...)...)
	cmd.Env = append(os.Environ(), addrEnv+"=", caEnv+"=", certEnv+"=", keyEnv+"=", bearerEnv+"=")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill() // an error means it has exited and been reaped already
	})
	return cmd
}

// runCommand runs the consentctl binary's import to the end.
func runCommand(t *testing.T, bin, addr, file string, args ...string) {
	t.Helper()
	cmd := importCommand(t, bin, addr, file, args...)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("consentctl import %s: %v\n%s", file, err, cmd.Stdout)
	}
	if out := fmt.Sprint(cmd.Stdout); !doneLine.MatchString(out) {
		t.Errorf("consentctl import %s: no final progress line:\n%s", file, out)
	}
}

// waitForEvents polls consentd until its history holds at least n events
// and returns how many it holds, or fails the test if the import ends
// first.
func waitForEvents(t *testing.T, c *client.Client, n int, exited <-chan error) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		resp, err := c.VerifyHistory(ctx)
		if err != nil {
			t.Fatalf("waiting for the import's first writes: %v", err)
		}
		var got uint64
		for _, p := range resp.GetPartitions() {
			got += p.GetEvents()
		}
		if int(got) >= n {
			return int(got)
		}
		select {
		case err := <-exited:
			t.Fatalf("the import exited (%v) before any write landed", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// TestImportReadmeSession runs the import session of docs/migrating.md (the console
// block after <!-- import-session -->) in a shell, as printed: the fixture
// generated by the consentfixture binary, its erasures, the import and the
// checks, against a fresh consentd (CONSENTD_ADDR). The fixture's dates
// are relative to the day and an import's time varies: both read as
// placeholders on both sides, and progress lines (a slow run) are dropped.
func TestImportReadmeSession(t *testing.T) {
	steps := daemontest.DocSession(t, "docs/migrating.md", "import-session")
	bin := daemontest.Build(t, ".", "../consentfixture")
	addr := daemontest.Start(t, "--data-dir", t.TempDir()).Addr
	dates := regexp.MustCompile(`\d{4}-\d\d-\d\d(T\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d))?`)
	timing := regexp.MustCompile(`in \S+ \(\d+ rows/s\)`)
	progressLine := regexp.MustCompile(`(?m)^import: \d+ rows, .*\n`)
	daemontest.Shell{
		Env: []string{
			"PATH=" + bin + string(os.PathListSeparator) + os.Getenv("PATH"),
			addrEnv + "=" + addr,
			// The README's shell has none of consentctl's credentials.
			caEnv + "=", certEnv + "=", keyEnv + "=", bearerEnv + "=", actorEnv + "=",
		},
		Normalise: func(s string) string {
			s = progressLine.ReplaceAllString(s, "")
			s = timing.ReplaceAllString(s, "in TIME (RATE rows/s)")
			return dates.ReplaceAllString(s, "DATE")
		},
	}.Run(t, steps)
}
