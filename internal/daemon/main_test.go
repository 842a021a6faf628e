package daemon_test

import (
	"testing"

	"github.com/consentd/consentd/internal/daemontest"
)

// TestMain lets this package's test binary run as consentd (daemontest.Main)
// for the tests that need a consentd process of their own; the others run
// consentd in the test's process. Either way goroutine leaks fail the tests.
func TestMain(m *testing.M) { daemontest.Main(m) }
