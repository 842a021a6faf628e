package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"flag"
	"fmt"
	"strings"
)

// tokenBytes is the randomness of a bearer token: 256 bits.
const tokenBytes = 32

func setupBearerToken(*flag.FlagSet) runner {
	return func(_ context.Context, c *call, args []string) (int, error) {
		name := args[0]
		// The tokens file splits lines on blanks and skips "#" comments.
		if strings.ContainsFunc(name, isSpace) || strings.HasPrefix(name, "#") {
			return exitError, fmt.Errorf("NAME: %q cannot be a caller of a tokens file: no blanks, no leading #", name)
		}
		b := make([]byte, tokenBytes)
		if _, err := rand.Read(b); err != nil {
			return exitError, err
		}
		token := base64.RawURLEncoding.EncodeToString(b)
		sum := sha256.Sum256([]byte(token))
		line := name + " " + hex.EncodeToString(sum[:])
		if c.out.json {
			return exitOK, c.out.jsonValue(bearerTokenJSON{Caller: name, BearerToken: token, TokensLine: line})
		}
		// The token alone on stdout, for a variable or a secret store; the
		// line for consentd's --tokens file on stderr, for >>.
		if err := c.out.linef("%s", token); err != nil {
			return exitError, err
		}
		if _, err := fmt.Fprintln(c.stderr, line); err != nil {
			return exitError, err
		}
		return exitOK, nil
	}
}

func isSpace(r rune) bool { return strings.TrimSpace(string(r)) == "" }

// bearerTokenJSON is bearer-token's --json output.
type bearerTokenJSON struct {
	Caller      string `json:"caller"`
	BearerToken string `json:"bearerToken"`
	TokensLine  string `json:"tokensLine"`
}
