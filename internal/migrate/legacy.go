package migrate

import (
	"crypto/hmac"
	"crypto/sha256"
	"strings"

	"golang.org/x/text/unicode/norm"

	"github.com/consentd/consentd/consent"
)

// LegacyKey is the key a store written before issue 17 holds contact's
// record under: HMAC-SHA256(secret, legacyNormalise(contact)). It is kept
// here, and only here, because no other code may ever key a contact this
// way again: it is how the migration finds the records it re-keys.
func LegacyKey(secret []byte, contact string) consent.Key {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(legacyNormalise(contact)))
	var k consent.Key
	m.Sum(k[:0])
	return k
}

// legacyNormalise is contactkey.Normalise as it was before issue 17:
// trimmed, lower case, NFC; every other difference of spelling (spaces in
// a phone number, an IDN domain in Unicode or punycode) made another key.
func legacyNormalise(contact string) string {
	return norm.NFC.String(strings.ToLower(strings.TrimSpace(contact)))
}
