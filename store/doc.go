// Package store persists consent records, their history and the request ids
// that make writes idempotent. Embedded keeps everything in one local file
// (the default: durable, no server). Every store folds events with
// consent.Apply inside its own atomic write, so the rules are the same
// wherever the data lives, and reports each applied write to one change
// observer so caches can drop what it made stale.
package store
