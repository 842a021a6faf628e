package daemon

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestFlagsFromEnvironment(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		env     map[string]string
		get     func(config) any
		want    any
		wantErr string
	}{
		{name: "default", get: func(c config) any { return c.cacheBytes }, want: int64(256 << 20)},
		{name: "env sets a value", env: map[string]string{"CONSENTD_CACHE_BYTES": "1024"},
			get: func(c config) any { return c.cacheBytes }, want: int64(1024)},
		{name: "flag overrides env", args: []string{"--cache-bytes", "2048"}, env: map[string]string{"CONSENTD_CACHE_BYTES": "1024"},
			get: func(c config) any { return c.cacheBytes }, want: int64(2048)},
		{name: "flag overrides a bad env value", args: []string{"--lease=3s"}, env: map[string]string{"CONSENTD_LEASE": "soon"},
			get: func(c config) any { return c.lease }, want: 3 * time.Second},
		{name: "empty env is unset", env: map[string]string{"CONSENTD_LISTEN": ""},
			get: func(c config) any { return c.listen }, want: "127.0.0.1:50051"},
		{name: "dashes become underscores", env: map[string]string{"CONSENTD_UNSUBSCRIBE_TTL": "48h", "CONSENTD_DATA_DIR": "/tmp/x"},
			get: func(c config) any { return []any{c.unsubscribeTTL, c.dataDir, c.secretFile} }, want: []any{48 * time.Hour, "/tmp/x", "/tmp/x/secret"}},
		{name: "text flag from env", env: map[string]string{"CONSENTD_LOG_LEVEL": "debug"},
			get: func(c config) any { return c.logLevel.String() }, want: "DEBUG"},
		{name: "redis password", env: map[string]string{"CONSENTD_REDIS_PASSWORD": "hunter2"},
			get: func(c config) any { return c.redisPassword }, want: "hunter2"},
		{name: "bad env value", env: map[string]string{"CONSENTD_CACHE_BYTES": "lots"},
			wantErr: `$CONSENTD_CACHE_BYTES: invalid value "lots" for -cache-bytes: parse error`},
		{name: "env values are validated like flags", env: map[string]string{"CONSENTD_LOG_FORMAT": "xml"},
			wantErr: `-log-format: want text or json, got "xml" (set by $CONSENTD_LOG_FORMAT)`},
		{name: "flag values are checked", args: []string{"--log-format", "xml"},
			wantErr: `-log-format: want text or json, got "xml"`},
		{name: "metrics address from env", env: map[string]string{"CONSENTD_METRICS_LISTEN": "127.0.0.1:9090"},
			get: func(c config) any { return c.metricsListen }, want: "127.0.0.1:9090"},
		{name: "metrics off by default", get: func(c config) any { return c.metricsListen }, want: ""},
		{name: "bad metrics address", args: []string{"--metrics-listen", "9090"},
			wantErr: `-metrics-listen: want host:port (127.0.0.1:8080, :8080), got "9090"`},
		{name: "health address from env", env: map[string]string{"CONSENTD_HEALTH_LISTEN": ":8086"},
			get: func(c config) any { return c.healthListen }, want: ":8086"},
		{name: "health listener off by default", get: func(c config) any { return c.healthListen }, want: ""},
		{name: "bad health address from env", env: map[string]string{"CONSENTD_HEALTH_LISTEN": "8086"},
			wantErr: `-health-listen: want host:port (127.0.0.1:8080, :8080), got "8086" (set by $CONSENTD_HEALTH_LISTEN)`},
		{name: "store timeouts by default", get: func(c config) any { return []time.Duration{c.storeReadTimeout, c.storeWriteTimeout} },
			want: []time.Duration{200 * time.Millisecond, 2 * time.Second}},
		{name: "store timeouts from env", env: map[string]string{"CONSENTD_STORE_READ_TIMEOUT": "50ms", "CONSENTD_STORE_WRITE_TIMEOUT": "5s"},
			get: func(c config) any { return []time.Duration{c.storeReadTimeout, c.storeWriteTimeout} }, want: []time.Duration{50 * time.Millisecond, 5 * time.Second}},
		{name: "zero read timeout", args: []string{"--store-read-timeout", "0s"},
			wantErr: "-store-read-timeout: want 1ms to 1m0s, got 0s"},
		{name: "write timeout too long", env: map[string]string{"CONSENTD_STORE_WRITE_TIMEOUT": "2m"},
			wantErr: "-store-write-timeout: want 1ms to 1m0s, got 2m0s (set by $CONSENTD_STORE_WRITE_TIMEOUT)"},
		{name: "redis init from env", args: []string{"--redis", "redis://a"}, env: map[string]string{"CONSENTD_REDIS_INIT": "true", "CONSENTD_REDIS_OPERATOR_CHECKS_SETTINGS": "1"},
			get: func(c config) any { return []bool{c.redisInit, c.redisOperatorChecksSettings} }, want: []bool{true, true}},
		{name: "redis init off by default", args: []string{"--redis", "redis://a"},
			get: func(c config) any { return []bool{c.redisInit, c.redisOperatorChecksSettings} }, want: []bool{false, false}},
		{name: "redis init without redis", args: []string{"--redis-init"},
			wantErr: "-redis-init: needs -redis, -redis-sentinel or -redis-cluster"},
		{name: "operator checks settings without redis", env: map[string]string{"CONSENTD_REDIS_OPERATOR_CHECKS_SETTINGS": "true"},
			wantErr: "-redis-operator-checks-settings: needs -redis, -redis-sentinel or -redis-cluster (set by $CONSENTD_REDIS_OPERATOR_CHECKS_SETTINGS)"},
		{name: "env conflicts like flags", args: []string{"--redis", "redis://a"}, env: map[string]string{"CONSENTD_REDIS_CLUSTER": "b:1"},
			wantErr: "give at most one of -redis, -redis-sentinel, -redis-cluster"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseFlags(tc.args, envOf(tc.env), io.Discard)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, tc.get(c)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestHelpNamesEveryVariable: --help documents the variable of every flag,
// on that flag's own usage line.
func TestHelpNamesEveryVariable(t *testing.T) {
	var out bytes.Buffer
	_, err := parseFlags([]string{"--help"}, envOf(nil), &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("err = %v, want flag.ErrHelp", err)
	}
	help := out.String()
	n := 0
	for _, name := range flagNames(t) {
		// The usage line follows the "  -name type" line, or a boolean
		// flag's "  -name" line.
		_, rest, ok := strings.Cut(help, "  -"+name+" ")
		if ok {
			rest = rest[strings.Index(rest, "\n")+1:]
		} else {
			_, rest, ok = strings.Cut(help, "  -"+name+"\n")
		}
		line, _, _ := strings.Cut(strings.TrimPrefix(rest, " "), "\n")
		if !ok || !strings.Contains(line, "($"+envName(name)+")") {
			t.Errorf("--help: usage of -%s does not name $%s:\n%s", name, envName(name), line)
		}
		n++
	}
	if n < 15 {
		t.Errorf("found only %d flags", n)
	}
	for _, want := range []string{"CONSENTD_REDIS_PASSWORD", "CONSENTD_CACHE_BYTES"} {
		if !strings.Contains(help, want) {
			t.Errorf("--help does not mention %s", want)
		}
	}
}

// flagNames lists consentd's flags, as its FlagSet defines them.
func flagNames(t *testing.T) []string {
	t.Helper()
	var out bytes.Buffer
	_, err := parseFlags([]string{"-no-such-flag-xyz"}, envOf(nil), &out)
	if err == nil {
		t.Fatal("an unknown flag was accepted")
	}
	var names []string
	for _, line := range strings.Split(out.String(), "\n") {
		if rest, ok := strings.CutPrefix(line, "  -"); ok {
			name, _, _ := strings.Cut(rest, " ")
			names = append(names, name)
		}
	}
	return names
}

// TestRunBadEnvironment: a bad value in the environment stops consentd
// before it opens anything, with exit code 2 and the variable's name.
func TestRunBadEnvironment(t *testing.T) {
	var out bytes.Buffer
	code := run(context.Background(), []string{"--data-dir", t.TempDir()}, envOf(map[string]string{"CONSENTD_PARTITIONS": "-1"}), &out)
	if code != 2 || !strings.Contains(out.String(), "$CONSENTD_PARTITIONS") {
		t.Fatalf("exit %d, output %q; want 2 naming $CONSENTD_PARTITIONS", code, out.String())
	}
}

// TestDocsNameEveryFlag keeps the docs true: every flag consentd has is a
// row of one of their flag tables (docs/configuration.md,
// docs/deploying-redis.md).
func TestDocsNameEveryFlag(t *testing.T) {
	rows := map[string]bool{}
	for _, doc := range []string{"configuration.md", "deploying-redis.md"} {
		text, err := os.ReadFile(filepath.Join("..", "..", "docs", doc))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(text), "\n") {
			if cell, ok := strings.CutPrefix(line, "| "); ok {
				cell, _, _ = strings.Cut(cell, " |")
				for _, f := range strings.Split(cell, ", ") {
					rows[strings.Trim(f, "`")] = true
				}
			}
		}
	}
	for _, name := range flagNames(t) {
		if !rows["--"+name] {
			t.Errorf("docs/configuration.md and docs/deploying-redis.md have no table row for --%s", name)
		}
	}
}
