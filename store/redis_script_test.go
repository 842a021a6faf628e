package store

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"io/fs"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

// scriptTable matches a script's KEYS or ARGV, and whether it is indexed.
var scriptTable = regexp.MustCompile(`\b(KEYS|ARGV)\b(\s*\[)?`)

// unnamedUses lists the lines of a Lua script that use KEYS or ARGV other
// than to name one of them: the script opens with a naming block (blank
// lines, comments, and one-line local declarations such as
// `local record_key = KEYS[1]` or `local function history_key(c) return
// KEYS[6 + 2 * c] end`), and the first other line ends it. In the block, a
// line that mentions KEYS or ARGV indexes it and does nothing else (calls no
// Redis command); after it, neither is mentioned at all, comments included,
// so that the steps speak in names.
func unnamedUses(src string) []string {
	var bad []string
	naming := true
	for n, line := range strings.Split(src, "\n") {
		trimmed := strings.TrimSpace(line)
		if naming && trimmed != "" && !strings.HasPrefix(trimmed, "--") && !strings.HasPrefix(trimmed, "local ") {
			naming = false
		}
		uses := scriptTable.FindAllStringSubmatch(line, -1)
		if len(uses) == 0 {
			continue
		}
		switch {
		case !naming:
			bad = append(bad, fmt.Sprintf("line %d uses %s after the naming block: %s", n+1, uses[0][1], trimmed))
		case strings.HasPrefix(trimmed, "--"):
			// A comment in the naming block describes the names.
		case strings.Contains(line, "redis."):
			bad = append(bad, fmt.Sprintf("line %d runs a command in the naming block: %s", n+1, trimmed))
		default:
			for _, u := range uses {
				if u[2] == "" {
					bad = append(bad, fmt.Sprintf("line %d names all of %s, not one: %s", n+1, u[1], trimmed))
				}
			}
		}
	}
	return bad
}

func TestUnnamedUses(t *testing.T) {
	for _, tc := range []struct {
		name string
		src  string
		want int // lines reported
	}{
		{"names at the top", "-- KEYS\nlocal a = KEYS[1]\n\nlocal n = tonumber(ARGV[1])\nredis.call('SET', a, n)\n", 0},
		{"a naming function", "local function b(c) return KEYS[2 + c] end\nfor c = 0, 1 do redis.call('DEL', b(c)) end\n", 0},
		{"no KEYS nor ARGV", "return redis.call('TIME')\n", 0},
		{"an index in a step", "local a = KEYS[1]\nredis.call('SET', a, ARGV[1])\n", 1},
		{"an index in a step's comment", "local a = KEYS[1]\nredis.call('DEL', a)\n-- then ARGV[2]\n", 1},
		{"a naming line after a step", "redis.call('DEL', 'x')\nlocal a = KEYS[1]\n", 1},
		{"a command in the naming block", "local id = redis.call('GET', KEYS[1])\nreturn id\n", 1},
		{"the whole table named", "local keys = KEYS\nreturn keys[1]\n", 1},
		{"a step on the naming line", "local a = KEYS[1] redis.call('DEL', a)\n", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := unnamedUses(tc.src); len(got) != tc.want {
				t.Errorf("got %d lines %q, want %d", len(got), got, tc.want)
			}
		})
	}
}

// TestScriptsNameKeysAndArgs: every embedded script names its KEYS and ARGV
// at the top and uses them by name after.
func TestScriptsNameKeysAndArgs(t *testing.T) {
	names, err := fs.Glob(luaFiles, "lua/*.lua")
	if err != nil {
		t.Fatal(err)
	}
	if len(names) == 0 {
		t.Fatal("no script embedded from lua/")
	}
	for _, name := range names {
		src, err := luaFiles.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, bad := range unnamedUses(string(src)) {
			t.Errorf("%s: %s: name it in a local at the top", name, bad)
		}
	}
}

// TestScriptsHashTheirFiles: what go-redis sends by SHA is the file as it
// is, so a script's EVALSHA and the file it is read from agree.
func TestScriptsHashTheirFiles(t *testing.T) {
	var used []string
	for _, tc := range []struct {
		file   string
		script *redis.Script
	}{
		{"write.lua", writeScript},
		{"claim.lua", claimScript},
		{"unbind.lua", unbindScript},
	} {
		used = append(used, "lua/"+tc.file)
		src, err := luaFiles.ReadFile("lua/" + tc.file)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha1.Sum(src)
		if got, want := tc.script.Hash(), hex.EncodeToString(sum[:]); got != want {
			t.Errorf("%s: got hash %s, want the file's %s", tc.file, got, want)
		}
	}
	// A file no script reads is dead code, or a script this test misses.
	names, _ := fs.Glob(luaFiles, "lua/*.lua")
	for _, name := range names {
		if !slices.Contains(used, name) {
			t.Errorf("%s is embedded but not in this test's table", name)
		}
	}
}
