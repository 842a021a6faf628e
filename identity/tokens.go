package identity

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"
)

// Tokens maps the SHA-256 of bearer tokens to caller names. Its file has one
// caller per line, `NAME SHA256HEX` (the hex SHA-256 of the token, 64
// digits; make one with `printf %s "$TOKEN" | sha256sum`); blank lines and
// lines starting with # are ignored. A name may have several tokens (for
// rotation); a hash may appear once. The file holds no token, so it may be
// read by whoever deploys consentd.
type Tokens struct {
	entries []tokenEntry
}

type tokenEntry struct {
	name string
	hash [sha256.Size]byte
}

// LoadTokens reads a tokens file; errors name the file and line.
func LoadTokens(path string) (*Tokens, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	t, err := ParseTokens(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%s:%w", path, err)
	}
	return t, nil
}

// ParseTokens reads the tokens file format (see Tokens); errors start with
// the line number ("3: ...").
func ParseTokens(r io.Reader) (*Tokens, error) {
	t := &Tokens{}
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
		var e tokenEntry
		e.name = f[0]
		h, err := hex.DecodeString(f[1])
		if err != nil || len(h) != sha256.Size {
			return nil, fmt.Errorf("%d: caller %q: want the token's SHA-256 as 64 hex digits", n, e.name)
		}
		copy(e.hash[:], h)
		if prev, ok := seen[e.hash]; ok {
			return nil, fmt.Errorf("%d: caller %q: the same token hash as line %d", n, e.name, prev)
		}
		seen[e.hash] = n
		t.entries = append(t.entries, e)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(t.entries) == 0 {
		return nil, fmt.Errorf("1: no tokens: want lines of NAME SHA256HEX")
	}
	return t, nil
}

// Len is the number of tokens.
func (t *Tokens) Len() int { return len(t.entries) }

// Lookup returns the caller whose token is token. It compares the token's
// hash with every entry in constant time, so timing tells nothing of which
// or how much matched.
func (t *Tokens) Lookup(token string) (string, bool) {
	h := sha256.Sum256([]byte(token))
	found := -1
	for i := range t.entries {
		if subtle.ConstantTimeCompare(h[:], t.entries[i].hash[:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return "", false
	}
	return t.entries[found].name, true
}
