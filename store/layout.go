package store

import (
	"errors"
	"fmt"
)

// LegacyKeyScheme is the contact-key scheme (contactkey.Scheme) of every
// store written before the layout recorded one: HMAC-SHA256 of the
// contact. Those stores keyed the raw string (trimmed, lower-cased, NFC),
// not a canonical identifier, so they must be migrated.
const LegacyKeyScheme = "hmac-sha256"

// ErrUnmigrated is what opening a store written before issue 17 returns (as
// an *UnmigratedError): its contacts are keyed by the raw string as the
// sender spelled it, so two spellings of one identifier are two records,
// and serving it would lose every withdrawal written in another spelling.
// consentctl migrate re-keys it.
var ErrUnmigrated = errors.New("store: unmigrated")

// UnmigratedError names the store and the legacy layout found.
type UnmigratedError struct {
	Store  string // the file, or "redis"
	Layout string
}

func (e *UnmigratedError) Error() string {
	return fmt.Sprintf("store: %s has layout %q, from before contacts were keyed by their canonical identifier: "+
		"it must be migrated (consentctl migrate) before this version serves it", e.Store, e.Layout)
}

func (e *UnmigratedError) Is(target error) bool { return target == ErrUnmigrated }
