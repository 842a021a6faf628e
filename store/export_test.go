package store

import (
	"context"

	"github.com/consentd/consentd/consent"
)

// SetAuditAttempts makes Audit read a node at most n times to find its
// counters still, so a test can make it judge by bounds under writes.
func SetAuditAttempts(s *Redis, n int) { s.audit.attempts = n }

// ClaimOnly claims the request ids of ws and writes nothing: a sidecar that
// died between the claim and the write.
func ClaimOnly(ctx context.Context, s *Redis, ws ...consent.Write) error {
	_, err := s.claimAll(ctx, ws)
	return err
}

// RedisErr is redisErr: how the store classes an error from Redis.
var RedisErr = redisErr
