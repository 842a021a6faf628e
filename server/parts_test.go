package server

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"
)

func TestInParts(t *testing.T) {
	for _, n := range []int{0, 1, piece - 1, 3*piece + 7} {
		var seen atomic.Int64
		covered := make([]atomic.Int32, n)
		err := inParts(n, func(lo, hi int) error {
			for i := lo; i < hi; i++ {
				covered[i].Add(1)
			}
			seen.Add(int64(hi - lo))
			return nil
		})
		if err != nil || seen.Load() != int64(n) {
			t.Errorf("n=%d: %d items seen, err %v; want each once", n, seen.Load(), err)
		}
		for i := range covered {
			if covered[i].Load() != 1 {
				t.Fatalf("n=%d: item %d done %d times", n, i, covered[i].Load())
			}
		}
	}
	boom := errors.New("store down")
	if err := inParts(4*piece, func(lo, hi int) error { return boom }); !errors.Is(err, boom) {
		t.Errorf("inParts error = %v, want the parts' error", err)
	}
}

// A panic on a part's goroutine comes back on the caller's, where the
// recovery interceptor catches it, instead of ending the process.
func TestInPartsRaisesPanicsOnTheCaller(t *testing.T) {
	defer func() {
		v := recover()
		if s, ok := v.(string); !ok || !strings.Contains(s, "bad part") || !strings.Contains(s, "worker goroutine") {
			t.Errorf("recovered %v, want the part's panic with its stack", v)
		}
	}()
	inParts(4*piece, func(lo, hi int) error {
		if lo > 0 {
			panic("bad part")
		}
		return nil
	})
	t.Error("inParts returned after a part panicked")
}
