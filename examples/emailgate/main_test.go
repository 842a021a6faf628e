package main

import (
	"testing"

	"github.com/consentd/consentd/internal/daemontest"
)

// The tests start the consentd binary (see daemontest): checks, links and
// clicks travel over real TCP to a real daemon.
func TestMain(m *testing.M) { daemontest.Main(m) }
