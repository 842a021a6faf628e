// Package tokensfile writes consentd --tokens files for tests. It imports
// nothing of consentd, so that internal/daemon's own tests, which cannot
// import internal/daemontest, share it with the rest.
package tokensfile

import (
	"crypto/sha256"
	"encoding/hex"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Write writes a --tokens file in a fresh temporary directory, one line per
// caller (name → token) with the token's SHA-256 as the file holds it, and
// returns its path.
func Write(t testing.TB, callers map[string]string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("# consentd bearer tokens: NAME SHA256HEX\n\n")
	for _, name := range slices.Sorted(maps.Keys(callers)) {
		h := sha256.Sum256([]byte(callers[name]))
		b.WriteString(name + " " + hex.EncodeToString(h[:]) + "\n")
	}
	path := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
