package main

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/consentd/consentd/internal/daemontest"
)

// TestReadmeSession runs the session of docs/consentctl.md (the console
// block after <!-- consentctl-session -->) against a fresh consentd, command
// by command through run, and compares each output (stdout, then stderr)
// with the page's. Times and consistency tokens differ from run to run, so
// every time reads as NOW and every token as TOKEN on both sides. A command
// line may end in "; echo $?" to show the exit code.
func TestReadmeSession(t *testing.T) {
	steps := daemontest.DocSession(t, "docs/consentctl.md", "consentctl-session")
	var cmds [][]string
	for _, s := range steps {
		words, err := shellWords(strings.TrimSuffix(s.Cmd, "; echo $?"))
		if err != nil || len(words) == 0 || words[0] != "consentctl" {
			t.Fatalf("docs/consentctl.md session line %q: want a consentctl command (%v)", s.Cmd, err)
		}
		cmds = append(cmds, words[1:])
	}
	addr := daemontest.Start(t, "--data-dir", t.TempDir()).Addr
	env := map[string]string{addrEnv: addr}
	var docTokens, runTokens daemontest.ConsistencyTokenNames
	for i, args := range cmds {
		for j, a := range args {
			args[j] = strings.ReplaceAll(a, defaultAddr, addr)
		}
		var out bytes.Buffer
		code := run(testCtx(t), args, func(k string) string { return env[k] }, &out, &out)
		if strings.HasSuffix(steps[i].Cmd, "; echo $?") {
			fmt.Fprintln(&out, code)
		}
		got := runTokens.Replace(timestamps.ReplaceAllString(strings.TrimRight(out.String(), "\n"), nowPlaceholder))
		want := docTokens.Replace(timestamps.ReplaceAllString(strings.TrimRight(steps[i].Want, "\n"), nowPlaceholder))
		if got != want {
			t.Errorf("$ consentctl %s\n(-document +got):\n%s", strings.Join(args, " "), cmp.Diff(want, got))
		}
	}
}

// shellWords splits a command line as sh would, for the quoting a README
// uses: single quotes, double quotes with backslash escapes, backslashes.
func shellWords(s string) ([]string, error) {
	var (
		words []string
		cur   strings.Builder
		in    bool // inside a word
		quote byte
	)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote == '\'':
			if c == '\'' {
				quote = 0
			} else {
				cur.WriteByte(c)
			}
		case quote == '"':
			switch {
			case c == '"':
				quote = 0
			case c == '\\' && i+1 < len(s) && strings.IndexByte(`"\$`+"`", s[i+1]) >= 0:
				i++
				cur.WriteByte(s[i])
			default:
				cur.WriteByte(c)
			}
		case c == '\'' || c == '"':
			quote, in = c, true
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			in = true
		case c == ' ' || c == '\t':
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	if quote != 0 {
		return nil, errors.New("unterminated quote")
	}
	if in {
		words = append(words, cur.String())
	}
	return words, nil
}

func TestShellWords(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{`consentctl grant a@x.com email_marketing --method checkbox`, []string{"consentctl", "grant", "a@x.com", "email_marketing", "--method", "checkbox"}},
		{`consentctl grant a --third-party "Acme Lists" --evidence 'call 42'`, []string{"consentctl", "grant", "a", "--third-party", "Acme Lists", "--evidence", "call 42"}},
		{`a "" b`, []string{"a", "", "b"}},
		{`a\ b "c\"d"`, []string{"a b", `c"d`}},
	}
	for _, tt := range tests {
		got, err := shellWords(tt.in)
		if diff := cmp.Diff(tt.want, got); err != nil || diff != "" {
			t.Errorf("shellWords(%q): %v (-want +got):\n%s", tt.in, err, diff)
		}
	}
	if _, err := shellWords(`a "b`); err == nil {
		t.Error(`shellWords("a \"b"): no error for an unterminated quote`)
	}
}
