package main

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

	"github.com/consentd/consentd/internal/daemon"
	"github.com/consentd/consentd/server"
)

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestFlagsFromEnvironment(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		env     map[string]string
		get     func(daemon.Config) any
		want    any
		wantErr string
	}{
		{name: "default", get: func(c daemon.Config) any { return c.CacheBytes }, want: int64(256 << 20)},
		{name: "env sets a value", env: map[string]string{"CONSENTD_CACHE_BYTES": "1024"},
			get: func(c daemon.Config) any { return c.CacheBytes }, want: int64(1024)},
		{name: "flag overrides env", args: []string{"--cache-bytes", "2048"}, env: map[string]string{"CONSENTD_CACHE_BYTES": "1024"},
			get: func(c daemon.Config) any { return c.CacheBytes }, want: int64(2048)},
		{name: "flag overrides a bad env value", args: []string{"--lease=3s"}, env: map[string]string{"CONSENTD_LEASE": "soon"},
			get: func(c daemon.Config) any { return c.Lease }, want: 3 * time.Second},
		{name: "empty env is unset", env: map[string]string{"CONSENTD_LISTEN": ""},
			get: func(c daemon.Config) any { return c.Listen }, want: "127.0.0.1:50051"},
		{name: "dashes become underscores", env: map[string]string{"CONSENTD_UNSUBSCRIBE_TTL": "48h", "CONSENTD_DATA_DIR": "/tmp/x"},
			get: func(c daemon.Config) any { return []any{c.UnsubscribeTTL, c.DataDir} }, want: []any{48 * time.Hour, "/tmp/x"}},
		{name: "text flag from env", env: map[string]string{"CONSENTD_LOG_LEVEL": "debug"},
			get: func(c daemon.Config) any { return c.LogLevel.String() }, want: "DEBUG"},
		{name: "redis password", env: map[string]string{"CONSENTD_REDIS_PASSWORD": "hunter2"},
			get: func(c daemon.Config) any { return string(c.RedisPassword) }, want: "hunter2"},
		{name: "bad env value", env: map[string]string{"CONSENTD_CACHE_BYTES": "lots"},
			wantErr: `$CONSENTD_CACHE_BYTES: invalid value "lots" for --cache-bytes: parse error`},
		{name: "env values are validated like flags", env: map[string]string{"CONSENTD_LOG_FORMAT": "xml"},
			wantErr: `--log-format: want text or json, got "xml" (set by $CONSENTD_LOG_FORMAT)`},
		{name: "flag values are checked", args: []string{"--log-format", "xml"},
			wantErr: `--log-format: want text or json, got "xml"`},
		{name: "metrics address from env", env: map[string]string{"CONSENTD_METRICS_LISTEN": "127.0.0.1:9090"},
			get: func(c daemon.Config) any { return c.MetricsListen }, want: "127.0.0.1:9090"},
		{name: "metrics off by default", get: func(c daemon.Config) any { return c.MetricsListen }, want: ""},
		{name: "default region off by default", get: func(c daemon.Config) any { return c.DefaultRegion }, want: ""},
		{name: "default region from env", env: map[string]string{"CONSENTD_DEFAULT_REGION": "GB"},
			get: func(c daemon.Config) any { return c.DefaultRegion }, want: "GB"},
		{name: "unknown default region", args: []string{"--default-region", "UK"},
			wantErr: `--default-region: "UK" is not a known region code (a CLDR region such as GB, US, DE)`},
		{name: "lower-case default region", env: map[string]string{"CONSENTD_DEFAULT_REGION": "gb"},
			wantErr: `--default-region: "gb" is not a known region code (a CLDR region such as GB, US, DE) (set by $CONSENTD_DEFAULT_REGION)`},
		{name: "no gRPC listener", args: []string{"--listen", ""},
			wantErr: `--listen: must not be empty`},
		{name: "bad metrics address", args: []string{"--metrics-listen", "9090"},
			wantErr: `--metrics-listen: want host:port (127.0.0.1:8080, :8080), got "9090"`},
		{name: "health address from env", env: map[string]string{"CONSENTD_HEALTH_LISTEN": ":8086"},
			get: func(c daemon.Config) any { return c.HealthListen }, want: ":8086"},
		{name: "health listener off by default", get: func(c daemon.Config) any { return c.HealthListen }, want: ""},
		{name: "bad health address from env", env: map[string]string{"CONSENTD_HEALTH_LISTEN": "8086"},
			wantErr: `--health-listen: want host:port (127.0.0.1:8080, :8080), got "8086" (set by $CONSENTD_HEALTH_LISTEN)`},
		{name: "store timeouts by default", get: func(c daemon.Config) any { return []time.Duration{c.StoreReadTimeout, c.StoreWriteTimeout} },
			want: []time.Duration{200 * time.Millisecond, 2 * time.Second}},
		{name: "store timeouts from env", env: map[string]string{"CONSENTD_STORE_READ_TIMEOUT": "50ms", "CONSENTD_STORE_WRITE_TIMEOUT": "5s"},
			get: func(c daemon.Config) any { return []time.Duration{c.StoreReadTimeout, c.StoreWriteTimeout} }, want: []time.Duration{50 * time.Millisecond, 5 * time.Second}},
		{name: "zero read timeout", args: []string{"--store-read-timeout", "0s"},
			wantErr: "--store-read-timeout: want 1ms to 1m0s, got 0s"},
		{name: "write timeout too long", env: map[string]string{"CONSENTD_STORE_WRITE_TIMEOUT": "2m"},
			wantErr: "--store-write-timeout: want 1ms to 1m0s, got 2m0s (set by $CONSENTD_STORE_WRITE_TIMEOUT)"},
		{name: "redis init from env", args: []string{"--redis", "redis://a"}, env: map[string]string{"CONSENTD_REDIS_INIT": "true", "CONSENTD_REDIS_OPERATOR_CHECKS_SETTINGS": "1"},
			get: func(c daemon.Config) any { return []bool{c.RedisInit, c.RedisOperatorChecksSettings} }, want: []bool{true, true}},
		{name: "redis init off by default", args: []string{"--redis", "redis://a"},
			get: func(c daemon.Config) any { return []bool{c.RedisInit, c.RedisOperatorChecksSettings} }, want: []bool{false, false}},
		{name: "redis init without redis", args: []string{"--redis-init"},
			wantErr: "--redis-init: needs --redis, --redis-sentinel or --redis-cluster"},
		{name: "operator checks settings without redis", env: map[string]string{"CONSENTD_REDIS_OPERATOR_CHECKS_SETTINGS": "true"},
			wantErr: "--redis-operator-checks-settings: needs --redis, --redis-sentinel or --redis-cluster (set by $CONSENTD_REDIS_OPERATOR_CHECKS_SETTINGS)"},
		{name: "security flags from env are checked", env: map[string]string{"CONSENTD_TLS_CERT": "cert.pem"},
			wantErr: "--tls-cert: needs --tls-key (the certificate's private key) (set by $CONSENTD_TLS_CERT)"},
		{name: "env conflicts like flags", args: []string{"--redis", "redis://a"}, env: map[string]string{"CONSENTD_REDIS_CLUSTER": "b:1"},
			wantErr: "give at most one of --redis, --redis-sentinel, --redis-cluster"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, ok := parsed(t, tc.args, tc.env, tc.wantErr)
			if !ok {
				return
			}
			if diff := cmp.Diff(tc.want, tc.get(c)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestServerLimitFlags: the limits' flags set daemon.ServerLimits; their
// defaults are daemon.DefaultConfig's.
func TestServerLimitFlags(t *testing.T) {
	defaults := daemon.ServerLimits{
		Audience:             server.AudienceLimits{Window: 256 << 10, MaxStreams: 256, MaxBytes: 64 << 20, CallerShare: 0.5},
		MaxRecvBytes:         4 << 20,
		MaxConcurrentStreams: 1000,
		StreamWindow:         64 << 10,
		KeepaliveMinTime:     15 * time.Second,
		KeepaliveTime:        time.Minute,
		KeepaliveTimeout:     20 * time.Second,
		MaxConnIdle:          15 * time.Minute,
		MaxConnAge:           time.Hour,
	}
	with := func(f func(*daemon.ServerLimits)) daemon.ServerLimits {
		l := defaults
		f(&l)
		return l
	}
	for _, tc := range []struct {
		name    string
		args    []string
		env     map[string]string
		want    daemon.ServerLimits
		wantErr string
	}{
		{name: "defaults", want: defaults},
		{name: "flags", args: []string{"--audience-window-bytes", "1048576", "--audience-max-streams", "10", "--audience-max-bytes", "10485760",
			"--audience-caller-share", "1", "--grpc-max-recv-bytes", "1048576", "--grpc-max-concurrent-streams", "7", "--grpc-stream-window-bytes", "131072",
			"--grpc-keepalive-min-time", "1s", "--grpc-keepalive-time", "2s", "--grpc-keepalive-timeout", "3s",
			"--grpc-max-connection-idle", "0", "--grpc-max-connection-age", "0", "--grpc-max-connection-age-grace", "5m"},
			want: daemon.ServerLimits{
				Audience:     server.AudienceLimits{Window: 1 << 20, MaxStreams: 10, MaxBytes: 10 << 20, CallerShare: 1},
				MaxRecvBytes: 1 << 20, MaxConcurrentStreams: 7, StreamWindow: 128 << 10,
				KeepaliveMinTime: time.Second, KeepaliveTime: 2 * time.Second, KeepaliveTimeout: 3 * time.Second,
				MaxConnAgeGrace: 5 * time.Minute,
			}},
		{name: "environment", env: map[string]string{"CONSENTD_AUDIENCE_MAX_STREAMS": "12", "CONSENTD_GRPC_MAX_CONNECTION_AGE": "0"},
			want: with(func(l *daemon.ServerLimits) { l.Audience.MaxStreams, l.MaxConnAge = 12, 0 })},
		{name: "window too small", args: []string{"--audience-window-bytes", "100"},
			wantErr: "--audience-window-bytes: want at least 1024 bytes, got 100"},
		{name: "no stream", args: []string{"--audience-max-streams", "0"},
			wantErr: "--audience-max-streams: want at least 1, got 0"},
		{name: "budget smaller than a window", args: []string{"--audience-max-bytes", "1024"},
			wantErr: "--audience-max-bytes: want at least --audience-window-bytes (262144), got 1024"},
		{name: "no share", env: map[string]string{"CONSENTD_AUDIENCE_CALLER_SHARE": "0"},
			wantErr: "--audience-caller-share: want more than 0 and at most 1, got 0 (set by $CONSENTD_AUDIENCE_CALLER_SHARE)"},
		{name: "share over 1", args: []string{"--audience-caller-share", "1.5"},
			wantErr: "--audience-caller-share: want more than 0 and at most 1, got 1.5"},
		{name: "message size over gRPC's", args: []string{"--grpc-max-recv-bytes", "4294967296"},
			wantErr: "--grpc-max-recv-bytes: want 1024 to 2147483647, got 4294967296"},
		{name: "no stream per connection", args: []string{"--grpc-max-concurrent-streams", "0"},
			wantErr: "--grpc-max-concurrent-streams: want 1 to 4294967295, got 0"},
		{name: "window below HTTP/2's", args: []string{"--grpc-stream-window-bytes", "1024"},
			wantErr: "--grpc-stream-window-bytes: want 65535 to 2147483647, got 1024"},
		{name: "no ping interval", args: []string{"--grpc-keepalive-min-time", "0"},
			wantErr: "--grpc-keepalive-min-time: must be positive (gRPC reads 0 as 5m)"},
		{name: "pings too often", args: []string{"--grpc-keepalive-time", "10ms"},
			wantErr: "--grpc-keepalive-time: want at least 1s, got 10ms"},
		{name: "no ping timeout", args: []string{"--grpc-keepalive-timeout", "0"},
			wantErr: "--grpc-keepalive-timeout: want at least 1s, got 0s"},
		{name: "negative age", args: []string{"--grpc-max-connection-age", "-1s"},
			wantErr: "--grpc-max-connection-age: must not be negative (0 is never)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, ok := parsed(t, tc.args, tc.env, tc.wantErr)
			if !ok {
				return
			}
			if diff := cmp.Diff(tc.want, c.Limits); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestTracingFlags: tracing flags from the command line and the
// environment, and the values refused.
func TestTracingFlags(t *testing.T) {
	type tracing struct {
		Endpoint string
		Ratio    float64
	}
	const wantEndpoint = `--otlp-endpoint: want host:port, https://host:port or http://host:port (plaintext), got `
	for _, tc := range []struct {
		name    string
		args    []string
		env     map[string]string
		want    tracing
		wantErr string
	}{
		{name: "off by default", want: tracing{Ratio: 1}},
		{name: "flags", args: []string{"--otlp-endpoint", "otel-collector:4317", "--trace-sample-ratio", "0.25"},
			want: tracing{"otel-collector:4317", 0.25}},
		{name: "https", args: []string{"--otlp-endpoint", "https://otel-collector:4317"},
			want: tracing{"https://otel-collector:4317", 1}},
		{name: "http is plaintext", args: []string{"--otlp-endpoint", "http://127.0.0.1:4317/"},
			want: tracing{"http://127.0.0.1:4317/", 1}},
		{name: "environment", env: map[string]string{"CONSENTD_OTLP_ENDPOINT": "http://[::1]:4317", "CONSENTD_TRACE_SAMPLE_RATIO": "0"},
			want: tracing{"http://[::1]:4317", 0}},
		{name: "no port", args: []string{"--otlp-endpoint", "otel-collector"}, wantErr: wantEndpoint + `"otel-collector"`},
		{name: "no host", args: []string{"--otlp-endpoint", ":4317"}, wantErr: wantEndpoint + `":4317"`},
		{name: "URL without port", args: []string{"--otlp-endpoint", "https://otel-collector"}, wantErr: wantEndpoint + `"https://otel-collector"`},
		{name: "other scheme", args: []string{"--otlp-endpoint", "grpc://otel-collector:4317"}, wantErr: wantEndpoint + `"grpc://otel-collector:4317"`},
		{name: "path", args: []string{"--otlp-endpoint", "http://otel-collector:4318/v1/traces"}, wantErr: wantEndpoint + `"http://otel-collector:4318/v1/traces"`},
		{name: "bad endpoint from env", env: map[string]string{"CONSENTD_OTLP_ENDPOINT": "4317"},
			wantErr: wantEndpoint + `"4317" (set by $CONSENTD_OTLP_ENDPOINT)`},
		{name: "ratio above 1", args: []string{"--otlp-endpoint", "c:4317", "--trace-sample-ratio", "1.5"},
			wantErr: `--trace-sample-ratio: want 0 to 1, got 1.5`},
		{name: "negative ratio", args: []string{"--trace-sample-ratio=-0.1"},
			wantErr: `--trace-sample-ratio: want 0 to 1, got -0.1`},
		{name: "NaN ratio", args: []string{"--trace-sample-ratio", "NaN"},
			wantErr: `--trace-sample-ratio: want 0 to 1, got NaN`},
		{name: "bad ratio from env", env: map[string]string{"CONSENTD_TRACE_SAMPLE_RATIO": "2"},
			wantErr: `--trace-sample-ratio: want 0 to 1, got 2 (set by $CONSENTD_TRACE_SAMPLE_RATIO)`},
		{name: "not a number", env: map[string]string{"CONSENTD_TRACE_SAMPLE_RATIO": "half"},
			wantErr: `$CONSENTD_TRACE_SAMPLE_RATIO: invalid value "half" for --trace-sample-ratio: parse error`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, ok := parsed(t, tc.args, tc.env, tc.wantErr)
			if !ok {
				return
			}
			got := tracing{Endpoint: c.OTLPEndpoint, Ratio: c.TraceSampleRatio}
			if diff := cmp.Diff(tc.want, got); diff != "" {
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
		// The usage line follows the "  --name type" line, or a boolean
		// flag's "  --name" line.
		_, rest, ok := strings.Cut(help, "  --"+name+" ")
		if ok {
			rest = rest[strings.Index(rest, "\n")+1:]
		} else {
			_, rest, ok = strings.Cut(help, "  --"+name+"\n")
		}
		line, _, _ := strings.Cut(strings.TrimPrefix(rest, " "), "\n")
		if !ok || !strings.Contains(line, "($"+envName(name)+")") {
			t.Errorf("--help: usage of --%s does not name $%s:\n%s", name, envName(name), line)
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

// flagNames lists consentd's flags, as --help shows them.
func flagNames(t *testing.T) []string {
	t.Helper()
	var out bytes.Buffer
	if _, err := parseFlags([]string{"--help"}, envOf(nil), &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help: %v, want flag.ErrHelp", err)
	}
	var names []string
	for _, line := range strings.Split(out.String(), "\n") {
		if rest, ok := strings.CutPrefix(line, "  --"); ok {
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

// parsed parses args with the environment env. When wantErr is set it
// checks that parsing fails with exactly that message and returns false;
// otherwise it fails the test on an error.
func parsed(t *testing.T, args []string, env map[string]string, wantErr string) (daemon.Config, bool) {
	t.Helper()
	c, err := parseFlags(args, envOf(env), io.Discard)
	if wantErr != "" {
		if err == nil || err.Error() != wantErr {
			t.Fatalf("err = %v, want %q", err, wantErr)
		}
		return c, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return c, true
}
