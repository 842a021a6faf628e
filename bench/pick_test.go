package bench

import (
	"math"
	"math/rand/v2"
	"testing"
)

func draw(p Picker, n, draws int) []int {
	r := rand.New(rand.NewPCG(1, 2)) // fixed seed: the counts are the same every run
	counts := make([]int, n)
	for range draws {
		counts[p.Next(r)]++ // out of range would panic here
	}
	return counts
}

func TestZipfSkew(t *testing.T) {
	const n, draws, s = 1000, 200_000, DefaultZipfExponent
	z, err := NewZipf(n, s)
	if err != nil {
		t.Fatal(err)
	}
	counts := draw(z, n, draws)
	for k := 1; k < n; k++ {
		if counts[k] >= counts[0] {
			t.Fatalf("item %d drawn %d times, item 0 %d: want item 0 the most frequent", k, counts[k], counts[0])
		}
	}
	// The head follows 1/(k+1)^s: check the first items' shares against theory.
	total := 0.0
	for k := range n {
		total += math.Pow(float64(k+1), -s)
	}
	for _, k := range []int{0, 1, 2, 9} {
		want := math.Pow(float64(k+1), -s) / total
		got := float64(counts[k]) / draws
		if math.Abs(got-want) > 0.1*want {
			t.Errorf("item %d share %.4f, want %.4f ±10%%", k, got, want)
		}
	}
	// Skew, not exclusion: the tail is still drawn.
	tail := 0
	for _, c := range counts[n/2:] {
		tail += c
	}
	if tail == 0 {
		t.Error("no draw from the upper half of the items")
	}
}

func TestZipfExponentBelowOne(t *testing.T) {
	// math/rand/v2's Zipf refuses s ≤ 1; this one need not.
	z, err := NewZipf(10, 0.8)
	if err != nil {
		t.Fatal(err)
	}
	counts := draw(z, 10, 10_000)
	if counts[0] <= counts[9] {
		t.Errorf("counts %v: want item 0 drawn more than item 9", counts)
	}
}

func TestUniformCoverage(t *testing.T) {
	const n, draws = 20, 100_000
	u, err := NewUniform(n)
	if err != nil {
		t.Fatal(err)
	}
	want := float64(draws) / n
	for k, c := range draw(u, n, draws) {
		if math.Abs(float64(c)-want) > 0.05*want {
			t.Errorf("item %d drawn %d times, want %.0f ±5%%", k, c, want)
		}
	}
}

func TestPickerSingleItem(t *testing.T) {
	z, err := NewZipf(1, DefaultZipfExponent)
	if err != nil {
		t.Fatal(err)
	}
	u, err := NewUniform(1)
	if err != nil {
		t.Fatal(err)
	}
	for name, p := range map[string]Picker{"zipf": z, "uniform": u} {
		if got := draw(p, 1, 100)[0]; got != 100 {
			t.Errorf("%s: item 0 drawn %d of 100 times", name, got)
		}
	}
}

func TestPickersRefuseBadArguments(t *testing.T) {
	tests := []struct {
		name string
		err  error
	}{
		{"zipf n=0", second(NewZipf(0, 1.1))},
		{"zipf s=0", second(NewZipf(10, 0))},
		{"zipf s<0", second(NewZipf(10, -1))},
		{"zipf s=NaN", second(NewZipf(10, math.NaN()))},
		{"zipf s=Inf", second(NewZipf(10, math.Inf(1)))},
		{"uniform n=0", second(NewUniform(0))},
		{"uniform n<0", second(NewUniform(-3))},
	}
	for _, tt := range tests {
		if tt.err == nil {
			t.Errorf("%s: no error", tt.name)
		}
	}
}

func second[T any](_ T, err error) error { return err }
