package store

// SetAuditAttempts makes Audit read a node at most n times to find its
// counters still, so a test can make it judge by bounds under writes.
func SetAuditAttempts(s *Redis, n int) { s.audit.attempts = n }
