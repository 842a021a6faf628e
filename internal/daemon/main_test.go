package daemon

import (
	"testing"

	"github.com/consentd/consentd/internal/daemontest"
)

// TestMain: most tests run consentd in the test's process, where goroutine
// leaks fail them; those that need a consentd process of their own run the
// binary daemontest builds.
func TestMain(m *testing.M) { daemontest.Main(m) }
