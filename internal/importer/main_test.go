package importer

import (
	"testing"

	"github.com/consentd/consentd/internal/daemontest"
)

// TestMain runs the tests, or consentd when a test starts one.
func TestMain(m *testing.M) { daemontest.Main(m) }
