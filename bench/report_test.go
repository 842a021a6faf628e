package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

func rows() []Row {
	floor := &Result{Offered: 5000, Achieved: 5000}
	check := &Result{Offered: 5000, Achieved: 4990}
	for range 100 {
		floor.Record(100*time.Microsecond, nil)
		check.Record(150*time.Microsecond, nil)
	}
	check.Record(2*time.Millisecond, errors.New("rpc error: code = Unavailable | closing"))
	return []Row{
		{Scenario: "floor", Transport: "tcp", Result: floor},
		{Scenario: "check-warm", Transport: "tcp", Result: check, Baseline: "floor", Extra: map[string]float64{"hit_ratio": 0.995}},
		{Scenario: "check-warm", Transport: "unix", Result: check, Baseline: "floor"}, // no unix floor
		{Scenario: "filter", Transport: "tcp", Extra: map[string]float64{"contacts_per_s": 1234567.8}},
		// On another store, with one core: judged against its own floor only.
		{Scenario: "floor", Transport: "tcp", Store: "redis", Procs: 1, Result: check},
		{Scenario: "check-warm", Transport: "tcp", Store: "redis", Procs: 1, Result: floor, Baseline: "floor"},
		{Scenario: "check-warm", Transport: "tcp", Store: "redis", Result: floor, Baseline: "floor"}, // no floor with all cores
		{Scenario: "check-warm", Transport: "tcp", Store: "redis", Procs: 1, Probe: true, Result: floor, Baseline: "floor"},
	}
}

func TestSetRatios(t *testing.T) {
	rs := rows()
	SetRatios(rs)
	want := []float64{0, 1.5, 0, 0, 0, 1 / 1.5, 0, 1 / 1.5}
	for i, r := range rs {
		if math.Abs(r.Ratio-want[i]) > 0.01 {
			t.Errorf("row %d (%s over %s) Ratio = %v, want %v", i, r.Scenario, r.Transport, r.Ratio, want[i])
		}
	}
}

func TestWriteMarkdown(t *testing.T) {
	rs := rows()
	SetRatios(rs)
	var b bytes.Buffer
	if err := WriteMarkdown(&b, rs); err != nil {
		t.Fatal(err)
	}
	got := strings.Split(b.String(), "\n")
	want := []string{
		"| scenario | transport | store | procs | offered/s | achieved/s | p50 µs | p90 µs | p99 µs | p99.9 µs | max µs | errors | p99 vs baseline | contacts_per_s | hit_ratio |",
		"| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
		"| floor | tcp |  | all | 5000 | 5000 | 100 | 100 | 100 | 100 | 100 | 0 | — |  |  |",
		"| check-warm | tcp |  | all | 5000 | 4990 | 150 | 150 | 150 | 2000 | 2000 | 1 | 1.50× floor |  | 0.995 |",
		"| check-warm | unix |  | all | 5000 | 4990 | 150 | 150 | 150 | 2000 | 2000 | 1 | — |  |  |",
		"| filter | tcp |  | all | — | — | — | — | — | — | — | — | — | 1234568 |  |",
		"| floor | tcp | redis | 1 | 5000 | 4990 | 150 | 150 | 150 | 2000 | 2000 | 1 | — |  |  |",
		"| check-warm | tcp | redis | 1 | 5000 | 5000 | 100 | 100 | 100 | 100 | 100 | 0 | 0.67× floor |  |  |",
		"| check-warm | tcp | redis | all | 5000 | 5000 | 100 | 100 | 100 | 100 | 100 | 0 | — |  |  |",
		"",
		"Errors:",
		"",
		"- check-warm over tcp: 1 of 101 failed",
		"  - `rpc error: code = Unavailable | closing`",
		"- check-warm over unix: 1 of 101 failed",
		"  - `rpc error: code = Unavailable | closing`",
		"- floor over tcp on redis: 1 of 101 failed",
		"  - `rpc error: code = Unavailable | closing`",
		"",
	}
	if !slices.Equal(got, want) {
		t.Errorf("markdown:\n%s\nwant:\n%s", b.String(), strings.Join(want, "\n"))
	}
}

func TestWriteMarkdownEscapesCells(t *testing.T) {
	var b bytes.Buffer
	if err := WriteMarkdown(&b, []Row{{Scenario: "a|b", Transport: "x\ny"}}); err != nil {
		t.Fatal(err)
	}
	if line := strings.Split(b.String(), "\n")[2]; !strings.HasPrefix(line, `| a\|b | x y |`) {
		t.Errorf("row %q: want the pipe escaped and the newline flattened", line)
	}
}

func TestWriteJSON(t *testing.T) {
	rs := rows()
	SetRatios(rs)
	var b bytes.Buffer
	if err := WriteJSON(&b, rs, map[string]string{"command": "consentbench", "gomaxprocs": "2"}); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Meta map[string]string            `json:"meta"`
		Rows []map[string]json.RawMessage `json:"rows"`
	}
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatalf("%v in\n%s", err, b.String())
	}
	if got.Meta["command"] != "consentbench" || len(got.Rows) != len(rs) {
		t.Fatalf("meta %v, %d rows; want the meta given and %d rows", got.Meta, len(got.Rows), len(rs))
	}
	for i, r := range got.Rows {
		for _, k := range []string{"scenario", "transport", "store", "gomaxprocs", "probe", "baseline", "ratio", "result", "extra"} {
			if _, ok := r[k]; !ok {
				t.Errorf("row %d has no %q field: %v", i, k, r)
			}
		}
	}
	for _, s := range []string{`"p99_us": 150`, `"ratio": 1.5`, `"hit_ratio": 0.995`, `"result": null`, `"extra": {}`, `"baseline": "floor"`} {
		if !strings.Contains(b.String(), s) {
			t.Errorf("JSON lacks %s:\n%s", s, b.String())
		}
	}

	t.Run("empty", func(t *testing.T) {
		var b bytes.Buffer
		if err := WriteJSON(&b, nil, nil); err != nil {
			t.Fatal(err)
		}
		if got, want := b.String(), "{\n  \"meta\": {},\n  \"rows\": []\n}\n"; got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	})
	t.Run("not a number", func(t *testing.T) {
		err := WriteJSON(&bytes.Buffer{}, []Row{{Scenario: "s", Transport: "tcp", Extra: map[string]float64{"hit_ratio": math.NaN()}}}, nil)
		if err == nil || !strings.Contains(err.Error(), "hit_ratio") {
			t.Errorf("err = %v, want one naming hit_ratio", err)
		}
	})
}
