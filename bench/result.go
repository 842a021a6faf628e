package bench

import (
	"encoding/json"
	"slices"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// The histogram's range and precision: 1 µs to 60 s at 3 significant digits
// (an error of at most 0.1%). Values are recorded in nanoseconds; the 1 µs
// floor stops the histogram spending buckets on precision nobody reads.
const (
	histLowest  = int64(time.Microsecond)
	histHighest = int64(60 * time.Second)
	histDigits  = 3
)

// maxErrorSamples is how many distinct error texts a Result keeps: enough to
// tell one failure mode from several, bounded however many requests fail.
const maxErrorSamples = 5

// Result is what a run measured. The latency distribution holds every
// completed measured request, failed ones included, so a timeout shows in the
// tail instead of vanishing from it. The zero Result is empty and ready to use;
// a Result is not safe for concurrent use.
type Result struct {
	Offered      float64  // requests per second offered (the Load's Rate)
	Achieved     float64  // successful completions per second over the measured window
	Count        int64    // measured requests that completed, failed ones included
	Errors       int64    // how many of Count failed, timeouts included
	ErrorSamples []string // up to 5 distinct error texts, in the order first seen

	hist *hdrhistogram.Histogram // nil until something is recorded
	max  time.Duration           // exact, where the histogram's is rounded up
}

// Record adds one completed request that took d and failed with err (nil for
// success). Latencies past 60 s are counted as 60 s in the percentiles (Max
// keeps the true value); negative ones as zero.
func (r *Result) Record(d time.Duration, err error) {
	d = max(d, 0)
	r.histogram().RecordValue(min(int64(d), histHighest)) // in range, so it cannot fail
	r.max = max(r.max, d)
	r.Count++
	if err != nil {
		r.Errors++
		r.sample(err.Error())
	}
}

func (r *Result) histogram() *hdrhistogram.Histogram {
	if r.hist == nil {
		r.hist = hdrhistogram.New(histLowest, histHighest, histDigits)
	}
	return r.hist
}

func (r *Result) sample(msg string) {
	if len(r.ErrorSamples) < maxErrorSamples && !slices.Contains(r.ErrorSamples, msg) {
		r.ErrorSamples = append(r.ErrorSamples, msg)
	}
}

// Merge folds in other as the work of another load generator over the same
// window (another worker pool or process driving the same server): counts and
// rates add, and the distribution is that of both. It is not an average of
// repeated runs, whose rates would not add.
func (r *Result) Merge(other *Result) {
	if other == nil {
		return
	}
	if other == r {
		// Merging a histogram into itself would read counts as it doubles them.
		c := *r
		c.ErrorSamples = nil
		if r.hist != nil {
			c.hist = r.hist.Clone()
		}
		other = &c
	}
	r.Offered += other.Offered
	r.Achieved += other.Achieved
	r.Count += other.Count
	r.Errors += other.Errors
	for _, s := range other.ErrorSamples {
		r.sample(s)
	}
	r.max = max(r.max, other.max)
	if other.hist != nil {
		r.histogram().Merge(other.hist) // same range on both sides, so nothing is dropped
	}
}

// Percentiles returns the latency at each percentile in ps (each in [0, 100];
// 99.9 is the 99.9th), in the order given: the spectrum a plot draws. An empty
// Result gives zeros.
func (r *Result) Percentiles(ps []float64) []time.Duration {
	out := make([]time.Duration, len(ps))
	if r.hist == nil {
		return out
	}
	for i, v := range r.hist.ValueAtPercentilesSlice(ps) {
		// The histogram answers with the top of a value's bucket; never report a
		// percentile above the largest latency actually seen.
		out[i] = min(time.Duration(v), r.max)
	}
	return out
}

func (r *Result) percentile(p float64) time.Duration {
	if r.hist == nil {
		return 0
	}
	return min(time.Duration(r.hist.ValueAtPercentile(p)), r.max)
}

// P50 is the median latency.
func (r *Result) P50() time.Duration { return r.percentile(50) }

// P90 is the 90th percentile latency.
func (r *Result) P90() time.Duration { return r.percentile(90) }

// P99 is the 99th percentile latency.
func (r *Result) P99() time.Duration { return r.percentile(99) }

// P999 is the 99.9th percentile latency.
func (r *Result) P999() time.Duration { return r.percentile(99.9) }

// Max is the largest latency recorded.
func (r *Result) Max() time.Duration { return r.max }

// resultJSON is Result's JSON form. Its field names are a contract with
// whatever reads the reports; add fields, never rename them.
type resultJSON struct {
	OfferedRPS   float64  `json:"offered_rps"`
	AchievedRPS  float64  `json:"achieved_rps"`
	Count        int64    `json:"count"`
	Errors       int64    `json:"errors"`
	ErrorSamples []string `json:"error_samples"`
	P50US        float64  `json:"p50_us"`
	P90US        float64  `json:"p90_us"`
	P99US        float64  `json:"p99_us"`
	P999US       float64  `json:"p999_us"`
	MaxUS        float64  `json:"max_us"`
}

// MarshalJSON writes the Result with snake_case names, rates in requests per
// second and latencies as microseconds (fractional) in fields ending in _us.
func (r *Result) MarshalJSON() ([]byte, error) {
	samples := r.ErrorSamples
	if samples == nil {
		samples = []string{} // always an array, so readers need not handle null
	}
	return json.Marshal(resultJSON{
		OfferedRPS:   r.Offered,
		AchievedRPS:  r.Achieved,
		Count:        r.Count,
		Errors:       r.Errors,
		ErrorSamples: samples,
		P50US:        micros(r.P50()),
		P90US:        micros(r.P90()),
		P99US:        micros(r.P99()),
		P999US:       micros(r.P999()),
		MaxUS:        micros(r.Max()),
	})
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
