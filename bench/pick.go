package bench

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
)

// Picker chooses which of n items (contacts) a request touches, in [0, n).
// The *rand.Rand carries all the mutable state, so one Picker serves any
// number of goroutines that each own a Rand, and a seeded run is repeatable.
type Picker interface {
	Next(r *rand.Rand) int
}

// DefaultZipfExponent is the skew of the default contact mix: a few contacts
// are asked about very often, most rarely, as on a real send path.
const DefaultZipfExponent = 1.1

// Zipf picks item k with probability proportional to 1/(k+1)^s: item 0 is the
// most frequent.
//
// It is not math/rand/v2's Zipf, which binds one *Rand at construction (so
// goroutines could not share it, and Picker hands the Rand in per call) and
// refuses s ≤ 1. Instead it keeps the cumulative weights and draws by binary
// search: exact for any s > 0, read-only after construction, at the cost of
// 8 bytes per item (8 MB for a million contacts) and a few dozen nanoseconds
// per draw.
type Zipf struct {
	cum []float64 // cum[k] = Σ_{j≤k} 1/(j+1)^s
}

// NewZipf returns a Zipf picker over n items with exponent s (use
// DefaultZipfExponent unless measuring skew itself).
func NewZipf(n int, s float64) (*Zipf, error) {
	if n <= 0 {
		return nil, fmt.Errorf("bench: Zipf needs at least one item, got %d", n)
	}
	if !(s > 0) || math.IsInf(s, 1) {
		return nil, fmt.Errorf("bench: Zipf exponent must be positive and finite, got %v", s)
	}
	cum := make([]float64, n)
	sum := 0.0
	for k := range cum {
		sum += math.Pow(float64(k+1), -s)
		cum[k] = sum
	}
	return &Zipf{cum: cum}, nil
}

// Next draws an item.
func (z *Zipf) Next(r *rand.Rand) int {
	u := r.Float64() * z.cum[len(z.cum)-1]
	// The first k whose cumulative weight reaches u: u lands in item k's share
	// with probability weight(k)/total. u < total, so k < n.
	k, _ := slices.BinarySearch(z.cum, u)
	return min(k, len(z.cum)-1)
}

// Uniform picks every item with the same probability.
type Uniform struct {
	n int
}

// NewUniform returns a uniform picker over n items.
func NewUniform(n int) (*Uniform, error) {
	if n <= 0 {
		return nil, fmt.Errorf("bench: Uniform needs at least one item, got %d", n)
	}
	return &Uniform{n: n}, nil
}

// Next draws an item.
func (u *Uniform) Next(r *rand.Rand) int { return r.IntN(u.n) }
