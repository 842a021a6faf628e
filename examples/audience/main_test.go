package main

import (
	"testing"

	"github.com/consentd/consentd/internal/daemontest"
)

// The tests start the consentd binary (see daemontest): the audience travels
// over real TCP to a real daemon.
func TestMain(m *testing.M) { daemontest.Main(m) }
