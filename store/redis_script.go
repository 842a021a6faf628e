package store

import (
	"embed"

	"github.com/redis/go-redis/v9"
)

// luaFiles holds the Redis store's Lua scripts, one file each, so that they
// read as Lua: each names its KEYS and ARGV in local variables at the top
// (TestScriptsNameKeysAndArgs keeps it so) and says why at each step.
//
//go:embed lua/*.lua
var luaFiles embed.FS

// newScript is the script in lua/<name>, exactly as the file holds it: its
// text is what go-redis hashes for EVALSHA. A name without a file is a
// mistake in this package, found by any of its tests.
func newScript(name string) *redis.Script {
	src, err := luaFiles.ReadFile("lua/" + name)
	if err != nil {
		panic(err)
	}
	return redis.NewScript(string(src))
}
