// Package deploy holds the Kubernetes example (consentd-sidecar.yaml) and
// the image (Dockerfile); its test keeps the manifest true to consentd.
package deploy

import (
	"bufio"
	"context"
	"debug/elf"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/consentd/consentd/client"
	"github.com/consentd/consentd/internal/redisproc"
	"github.com/consentd/consentd/internal/redistest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const manifest = "consentd-sidecar.yaml"

// envVar is one entry of a container's env: a literal value, or the key of
// a Secret.
type envVar struct{ name, value, secretKey string }

// container is what the test reads of one container of the manifest.
type container struct {
	lines         []string
	env           []envVar
	mountPaths    []string
	probePorts    []string // of every grpc: probe
	restartPolicy string
}

// containerBlock finds the container called name in the manifest and
// parses it line by line (no YAML library in go.mod): its block ends at the
// first line indented no deeper than its "- name:".
func containerBlock(t *testing.T, text, name string) container {
	t.Helper()
	lines := strings.Split(text, "\n")
	start, indent := -1, 0
	for i, l := range lines {
		if strings.TrimSpace(l) == "- name: "+name {
			start, indent = i, len(l)-len(strings.TrimLeft(l, " "))
			break
		}
	}
	if start < 0 {
		t.Fatalf("%s: no container %q", manifest, name)
	}
	var c container
	for _, l := range lines[start+1:] {
		s := strings.TrimSpace(l)
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		if len(l)-len(strings.TrimLeft(l, " ")) <= indent {
			break
		}
		c.lines = append(c.lines, s)
	}
	field := func(s, key string) (string, bool) {
		v, ok := strings.CutPrefix(s, key+":")
		v, _, _ = strings.Cut(v, " #")
		return strings.Trim(strings.TrimSpace(v), `"`), ok
	}
	for i, s := range c.lines {
		if v, ok := field(s, "restartPolicy"); ok {
			c.restartPolicy = v
		}
		if v, ok := field(s, "mountPath"); ok {
			c.mountPaths = append(c.mountPaths, v)
		}
		if s == "grpc:" && i+1 < len(c.lines) {
			if v, ok := field(c.lines[i+1], "port"); ok {
				c.probePorts = append(c.probePorts, v)
			}
		}
		if v, ok := field(s, "- name"); ok && strings.HasPrefix(v, "CONSENTD_") {
			e := envVar{name: v}
			for _, next := range c.lines[i+1 : min(i+6, len(c.lines))] {
				if v, ok := field(next, "value"); ok {
					e.value = v
					break
				}
				if v, ok := field(next, "key"); ok {
					e.secretKey = v
					break
				}
			}
			if e.value == "" && e.secretKey == "" {
				t.Fatalf("%s: %s has neither a value nor a secretKeyRef key", manifest, e.name)
			}
			c.env = append(c.env, e)
		}
	}
	return c
}

// buildConsentd builds cmd/consentd as deploy/Dockerfile does (static,
// CGO_ENABLED=0) and checks the result has no dynamic loader, so it runs on
// distroless/static.
func buildConsentd(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "consentd")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, "github.com/consentd/consentd/cmd/consentd")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatalf("consentd built with CGO_ENABLED=0 asks for a dynamic loader: it would not run on distroless/static")
		}
	}
	dockerfile, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(dockerfile), "CGO_ENABLED=0 go build") {
		t.Errorf("Dockerfile no longer builds with CGO_ENABLED=0, which this test checks")
	}
	return bin
}

// TestManifest: every CONSENTD_* variable the manifest gives consentd is
// one consentd --help documents, the gRPC probes point at its health
// listener, and consentd runs with exactly the manifest's settings (paths
// and ports moved into the test's own, the Secret's values from a test
// Redis): the probe's call answers SERVING and the sender reaches consentd
// through the shared socket.
func TestManifest(t *testing.T) {
	b, err := os.ReadFile(manifest)
	if err != nil {
		t.Fatal(err)
	}
	sidecar := containerBlock(t, string(b), "consentd")
	sender := containerBlock(t, string(b), "sender")
	if sidecar.restartPolicy != "Always" {
		t.Errorf("consentd's restartPolicy is %q: a native sidecar needs Always", sidecar.restartPolicy)
	}

	bin := buildConsentd(t)
	help, err := exec.Command(bin, "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("consentd --help: %v\n%s", err, help)
	}
	known := regexp.MustCompile(`CONSENTD_[A-Z0-9_]+`).FindAllString(string(help), -1)
	env := map[string]envVar{}
	for _, e := range sidecar.env {
		if !slices.Contains(known, e.name) {
			t.Errorf("%s sets %s, which consentd --help does not know", manifest, e.name)
		}
		env[e.name] = e
	}
	for _, want := range []string{"CONSENTD_LISTEN", "CONSENTD_HEALTH_LISTEN", "CONSENTD_REDIS", "CONSENTD_REDIS_PASSWORD", "CONSENTD_SECRET_FILE"} {
		if _, ok := env[want]; !ok {
			t.Errorf("%s does not set %s", manifest, want)
		}
	}
	// Initialisation is a step of the first rollout only (README.md): left
	// in the manifest, it would make every later pod refuse to start.
	if _, ok := env["CONSENTD_REDIS_INIT"]; ok {
		t.Errorf("%s sets CONSENTD_REDIS_INIT: it belongs to the first rollout only", manifest)
	}
	health := env["CONSENTD_HEALTH_LISTEN"].value
	if len(sidecar.probePorts) != 2 {
		t.Errorf("consentd has %d gRPC probes, want the startup and readiness probes", len(sidecar.probePorts))
	}
	for _, p := range sidecar.probePorts {
		if !strings.HasSuffix(health, ":"+p) {
			t.Errorf("a gRPC probe asks port %s, but CONSENTD_HEALTH_LISTEN is %q", p, health)
		}
	}
	var senderAddr string
	for _, e := range sender.env {
		if e.name == "CONSENTD_ADDR" {
			senderAddr = e.value
		}
	}
	if senderAddr != env["CONSENTD_LISTEN"].value {
		t.Errorf("the sender's CONSENTD_ADDR is %q, consentd listens on %q", senderAddr, env["CONSENTD_LISTEN"].value)
	}
	if t.Failed() {
		return
	}

	// Run consentd as the manifest configures it. Each mount moves into a
	// directory of the test; each port to a free loopback one.
	dir := t.TempDir()
	move := func(v string) string {
		if strings.HasPrefix(v, ":") {
			return "127.0.0.1:0"
		}
		for _, m := range sidecar.mountPaths {
			if rest, ok := strings.CutPrefix(v, "unix:"+m); ok {
				return "unix:" + filepath.Join(dir, filepath.Base(m)) + rest
			}
			if rest, ok := strings.CutPrefix(v, m); ok {
				return filepath.Join(dir, filepath.Base(m)) + rest
			}
		}
		return v
	}
	for _, m := range sidecar.mountPaths {
		if err := os.Mkdir(filepath.Join(dir, filepath.Base(m)), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	const password = "manifest-test-password"
	r := redistest.Start(t, redisproc.Options{})
	// After start: redistest's own readiness check does not authenticate.
	if err := r.Client(t).ConfigSet(context.Background(), "requirepass", password).Err(); err != nil {
		t.Fatal(err)
	}
	secrets := map[string]string{"redis-url": "redis://" + r.Addr() + "/0", "redis-password": password}
	cmd := exec.Command(bin)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}
	for _, e := range sidecar.env {
		v := move(e.value)
		if e.secretKey != "" {
			var ok bool
			if v, ok = secrets[e.secretKey]; !ok {
				t.Fatalf("%s: %s comes from Secret key %q, which this test does not provide", manifest, e.name, e.secretKey)
			}
		}
		cmd.Env = append(cmd.Env, e.name+"="+v)
	}
	// The Redis is new: this is the first rollout, which initialises it
	// (README.md).
	cmd.Env = append(cmd.Env, "CONSENTD_REDIS_INIT=true")
	if err := os.WriteFile(move(env["CONSENTD_SECRET_FILE"].value), []byte(strings.Repeat("k", 32)), 0o400); err != nil {
		t.Fatal(err)
	}
	cmd.Dir = dir // a read-only root: consentd must not need its working directory
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(dir, 0o700) })
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	logs := make(chan string, 1)
	serving := make(chan string, 1)
	go func() {
		var all strings.Builder
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			all.WriteString(sc.Text() + "\n")
			var line struct{ Msg, Health string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "consentd serving" {
				serving <- line.Health
			}
		}
		io.Copy(io.Discard, stderr)
		logs <- all.String()
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	var healthAddr string
	select {
	case healthAddr = <-serving:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("consentd did not serve with the manifest's settings:\n%s", <-logs)
	case <-exited:
		exited <- nil
		t.Fatalf("consentd exited with the manifest's settings:\n%s", <-logs)
	}

	// What the kubelet's gRPC probe asks: Check of the empty service.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := grpc.NewClient(healthAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("probe of %s: %v, %v; want SERVING", healthAddr, resp, err)
	}
	// What the sender does, through the socket in the shared volume.
	c, err := client.New(move(senderAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if dec, err := c.Check(ctx, "ada@example.com", "email_marketing"); err != nil || dec.Allowed {
		t.Errorf("sender's Check: %+v, %v; want a DENY", dec, err)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Errorf("consentd exited with %v after SIGTERM:\n%s", err, <-logs)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("consentd did not stop on SIGTERM")
	}
}
