package caller

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"
)

// BearerTokens maps the SHA-256 of bearer tokens to caller names. Its file has one
// caller per line, `NAME SHA256HEX` (the hex SHA-256 of the token, 64
// digits; make one with `printf %s "$TOKEN" | sha256sum`); blank lines and
// lines starting with # are ignored. A name may have several tokens (for
// rotation); a hash may appear once. The file holds no token, so it may be
// read by whoever deploys consentd.
type BearerTokens struct {
	byHash map[[sha256.Size]byte]string
}

// LoadBearerTokens reads a tokens file; errors name the file and line.
func LoadBearerTokens(path string) (*BearerTokens, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	t, err := ParseBearerTokens(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%s:%w", path, err)
	}
	return t, nil
}

// ParseBearerTokens reads the tokens file format (see Tokens); errors start with
// the line number ("3: ...").
func ParseBearerTokens(r io.Reader) (*BearerTokens, error) {
	t := &BearerTokens{byHash: map[[sha256.Size]byte]string{}}
	seen := map[[sha256.Size]byte]int{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			return nil, fmt.Errorf("%d: want NAME SHA256HEX, got %d fields", n, len(f))
		}
		name := f[0]
		h, err := hex.DecodeString(f[1])
		if err != nil || len(h) != sha256.Size {
			return nil, fmt.Errorf("%d: caller %q: want the token's SHA-256 as 64 hex digits", n, name)
		}
		hash := [sha256.Size]byte(h)
		if prev, ok := seen[hash]; ok {
			return nil, fmt.Errorf("%d: caller %q: the same token hash as line %d", n, name, prev)
		}
		seen[hash] = n
		t.byHash[hash] = name
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(t.byHash) == 0 {
		return nil, fmt.Errorf("1: no tokens: want lines of NAME SHA256HEX")
	}
	return t, nil
}

// Len is the number of tokens.
func (t *BearerTokens) Len() int { return len(t.byHash) }

// Lookup returns the caller whose token is token, by the token's SHA-256:
// constant time in the number of callers (a call's cost must not grow with
// the tokens file). The map's timing can only tell how the digest of what
// was sent compares with stored digests, and nobody can choose a token by
// its digest, so it tells nothing about any stored token.
func (t *BearerTokens) Lookup(token string) (string, bool) {
	name, ok := t.byHash[sha256.Sum256([]byte(token))]
	return name, ok
}
