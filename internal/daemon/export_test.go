package daemon

import "testing"

// For the tests of package daemon_test, which run consentd as a process of
// its own through internal/daemontest: it imports this package, so the
// tests of package daemon cannot.

// MaxLogLine is the longest line consentd logs.
const MaxLogLine = maxLogLine

// PIIScanner is the scanner of TestNoRawContactAtRest.
type PIIScanner = piiScanner

func NewPIIScanner(contacts []string) *PIIScanner { return newPIIScanner(contacts) }

// Scan scans b, from where.
func (s *piiScanner) Scan(where string, b []byte) { s.scan(where, b) }

// Found is where it found a contact.
func (s *piiScanner) Found() []string { return s.found }

// WritePolicy writes a --policy file.
func WritePolicy(t *testing.T, path, body string) { writePolicy(t, path, body) }
