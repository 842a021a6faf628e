package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/consentd/consentd/internal/daemontest"
	"github.com/consentd/consentd/internal/importfixture"
)

// speedRowsEnv, set to a row count, runs TestImportSpeed: it measures an
// import of a generated file of that many rows into each store, for the
// rows/s the issue asks for (100,000 at least). It is off by default: it
// takes a core or two for a while. speedArgsEnv adds flags to the import
// ("--batch 10000").
//
//	CONSENTCTL_IMPORT_SPEED_ROWS=200000 go test ./cmd/consentctl -run ImportSpeed -v -cpuprofile cpu.out
const (
	speedRowsEnv = "CONSENTCTL_IMPORT_SPEED_ROWS"
	speedArgsEnv = "CONSENTCTL_IMPORT_SPEED_ARGS"
)

func TestImportSpeed(t *testing.T) {
	rows, _ := strconv.Atoi(os.Getenv(speedRowsEnv))
	if rows <= 0 {
		t.Skipf("set %s to a row count to measure", speedRowsEnv)
	}
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			addr := b.start(t)
			c := daemontest.Client(t, addr)
			dir := t.TempDir()
			file, exp := writeFixture(t, dir, "crm.csv", importfixture.Options{Rows: rows, Seed: 3, Now: time.Now(), Format: "csv"})
			eraseAll(t, c, exp.Erase)
			for _, run := range []struct{ name, out string }{{"import", "first"}, {"re-run", "again"}} {
				out := filepath.Join(dir, run.out)
				r := at(t, addr, append([]string{"import", file, "--out", out}, strings.Fields(os.Getenv(speedArgsEnv))...)...)
				if r.code != 0 {
					t.Fatalf("import: exit %d: %s", r.code, r.stderr)
				}
				var rep struct {
					Rows          int     `json:"rows"`
					Elapsed       float64 `json:"elapsed_seconds"`
					RowsPerSecond float64 `json:"rows_per_second"`
				}
				data, err := os.ReadFile(filepath.Join(out, "report.json"))
				if err != nil {
					t.Fatal(err)
				}
				if err := json.Unmarshal(data, &rep); err != nil {
					t.Fatal(err)
				}
				t.Logf("%s, %s %s: %d rows in %.2fs: %.0f rows/s", b.name, run.name, os.Getenv(speedArgsEnv), rep.Rows, rep.Elapsed, rep.RowsPerSecond)
			}
		})
	}
}

// BenchmarkImportClient measures the client's share of an import, without
// consentd: reading, parsing, classifying, building the writes and writing
// the report files, per (contact, purpose) row.
//
//	go test ./cmd/consentctl -run X -bench ImportClient -cpuprofile cpu.out
func BenchmarkImportClient(b *testing.B) {
	for _, format := range []string{"csv", "ndjson"} {
		b.Run(format, func(b *testing.B) {
			var in bytes.Buffer
			if _, err := importfixture.Generate(&in, importfixture.Options{Rows: 20000, Seed: 4, Now: time.Now(), Format: format}); err != nil {
				b.Fatal(err)
			}
			reg := defaultRegistry(b)
			m, _ := newMapping("", nil)
			dir := b.TempDir()
			b.SetBytes(int64(in.Len()))
			b.ResetTimer()
			rows := 0
			for range b.N {
				imp := &importer{cfg: &importConfig{file: "bench", batch: defaultImportBatch}, reg: reg, now: time.Now()}
				var err error
				if format == "csv" {
					var cv *csvInput
					if cv, err = newCSVInput(bytes.NewReader(in.Bytes())); err != nil {
						b.Fatal(err)
					}
					imp.layout, err = m.resolve(reg, cv.column)
					imp.input = cv
				} else {
					nd := newNDJSONInput(bytes.NewReader(in.Bytes()))
					imp.layout, err = m.resolve(reg, nd.column)
					imp.input = nd
				}
				if err != nil {
					b.Fatal(err)
				}
				rw, err := newReportWriter(dir, reg)
				if err != nil {
					b.Fatal(err)
				}
				err = imp.readBatches(context.Background(), func(batch *importBatch) error {
					batch.out = make([]outcome, len(batch.rows))
					for i := range batch.rows {
						r := &batch.rows[i]
						if r.reject != "" {
							continue
						}
						p, _ := reg.Lookup(r.purpose)
						if batch.out[i] = classify(r, p, imp.now); batch.out[i] == outValid || batch.out[i] == outWithdrawn {
							if _, err := proto.Marshal(r.write(batch.out[i], "bench")); err != nil {
								return err
							}
						}
					}
					rows += len(batch.rows)
					return rw.add(batch)
				})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := rw.finish(&importConfig{file: "bench"}, time.Second); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}
