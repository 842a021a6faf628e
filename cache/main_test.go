package cache

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test closes its caches, so ristretto's goroutines must all be gone.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
