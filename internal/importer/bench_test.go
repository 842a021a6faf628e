package importer

import (
	"bytes"
	"context"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/consentd/consentd/internal/importfixture"
)

// BenchmarkClient measures the client's share of an import, without
// consentd: reading, parsing, classifying, building the writes and writing
// the report files, per (contact, purpose) row.
//
//	go test ./internal/importer -run X -bench Client -cpuprofile cpu.out
func BenchmarkClient(b *testing.B) {
	for _, format := range []string{"csv", "ndjson"} {
		b.Run(format, func(b *testing.B) {
			var in bytes.Buffer
			if _, err := importfixture.Generate(&in, importfixture.Options{Rows: 20000, Seed: 4, Now: time.Now(), Format: format}); err != nil {
				b.Fatal(err)
			}
			reg := defaultRegistry(b)
			m := defaultMapping()
			dir := b.TempDir()
			b.SetBytes(int64(in.Len()))
			b.ResetTimer()
			rows := 0
			for range b.N {
				imp := &job{cfg: &Config{File: "bench", Batch: DefaultBatch}, reg: reg, now: time.Now()}
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
				err = imp.readBatches(context.Background(), func(batch *batch) error {
					batch.out = make([]outcome, len(batch.rows))
					for i := range batch.rows {
						r := &batch.rows[i]
						if r.reject != "" {
							batch.out[i] = outRejected
							continue
						}
						p, _ := reg.Lookup(r.purpose)
						if batch.out[i] = r.classify(p, imp.now); batch.out[i] == outValid || batch.out[i] == outWithdrawn {
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
				if _, err := rw.finish(&Config{File: "bench"}, time.Second, nil); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}
