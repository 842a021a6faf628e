package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/consentd/consentd/internal/daemontest"
	pb "github.com/consentd/consentd/proto/consent/v1"
)

func TestMain(m *testing.M) { daemontest.Main(m) }

// startDaemon runs consentd with args (see daemontest.Start), logging at
// debug level for a failed test's report.
func startDaemon(t *testing.T, args ...string) *daemontest.Daemon {
	t.Helper()
	return daemontest.Start(t, append([]string{"--log-level", "debug"}, args...)...)
}

func dial(t *testing.T, target string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(target, append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestSIGKILLLosesNoAcknowledgedWrite kills consentd the moment its last
// write is acknowledged and checks, after a restart, that every acknowledged
// write is there.
func TestSIGKILLLosesNoAcknowledgedWrite(t *testing.T) {
	dir := t.TempDir()
	d := startDaemon(t, "--listen", "127.0.0.1:0", "--data-dir", dir)
	cons := pb.NewConsentServiceClient(dial(t, d.Addr))
	const n = 50
	var tokens []string
	for i := range n {
		resp, err := cons.Grant(testCtx(t), &pb.GrantRequest{Contact: fmt.Sprintf("k%d@example.com", i),
			Purposes: []string{"email_marketing"}, Method: pb.Method_METHOD_CHECKBOX, RequestId: fmt.Sprint("g", i)})
		if err != nil {
			t.Fatal(err)
		}
		tokens = append(tokens, resp.GetConsistencyToken())
	}
	if _, err := cons.Withdraw(testCtx(t), &pb.WithdrawRequest{Contact: "k7@example.com", RequestId: "w7"}); err != nil {
		t.Fatal(err)
	}
	d.Kill()

	d2 := startDaemon(t, "--listen", "127.0.0.1:0", "--data-dir", dir)
	conn := dial(t, d2.Addr)
	check := pb.NewCheckServiceClient(conn)
	for i := range n {
		resp, err := check.Check(testCtx(t), &pb.CheckRequest{Contact: fmt.Sprintf("k%d@example.com", i), Purpose: "email_marketing"})
		if err != nil {
			t.Fatal(err)
		}
		want := pb.Decision_DECISION_ALLOW
		if i == 7 {
			want = pb.Decision_DECISION_DENY
		}
		if resp.GetDecision() != want {
			t.Errorf("contact %d after SIGKILL: %v, want %v", i, resp.GetDecision(), want)
		}
	}
	// A retry of an acknowledged write applies nothing twice.
	resp, err := pb.NewConsentServiceClient(conn).Grant(testCtx(t), &pb.GrantRequest{Contact: "k3@example.com",
		Purposes: []string{"email_marketing"}, Method: pb.Method_METHOD_CHECKBOX, RequestId: "g3"})
	if err != nil {
		t.Fatal(err)
	}
	// The same token, though another process issued it: a token is the
	// store's.
	if resp.GetConsistencyToken() != tokens[3] {
		t.Errorf("retried grant token = %q, want the original %q", resp.GetConsistencyToken(), tokens[3])
	}
}

// TestGracefulShutdown sends SIGTERM during a stream: the stream finishes,
// the process exits 0, and the store is released for the next start.
func TestGracefulShutdown(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(t.TempDir(), "consentd.sock")
	d := startDaemon(t, "--listen", "unix:"+sock, "--data-dir", dir)
	conn := dial(t, "unix:"+sock)
	health, err := healthpb.NewHealthClient(conn).Check(testCtx(t), &healthpb.HealthCheckRequest{Service: "consent.v1.CheckService"})
	if err != nil || health.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health = %v, %v", health, err)
	}
	stream, err := pb.NewCheckServiceClient(conn).FilterAudience(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&pb.FilterAudienceRequest{Purpose: "email_marketing", Contacts: []string{"a@example.com"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	d.Signal(t, syscall.SIGTERM)
	// The in-flight stream still completes.
	if err := stream.Send(&pb.FilterAudienceRequest{Contacts: []string{"b@example.com"}}); err != nil {
		t.Fatal(err)
	}
	stream.CloseSend()
	var summary *pb.FilterAudienceSummary
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("in-flight stream failed during shutdown: %v", err)
		}
		if resp.GetSummary() != nil {
			summary = resp.GetSummary()
		}
	}
	if summary.GetTotal() != 2 {
		t.Errorf("summary total = %d, want 2", summary.GetTotal())
	}
	if code := d.Wait(t); code != 0 {
		t.Errorf("exit code after SIGTERM = %d, want 0", code)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("socket file left behind: %v", err)
	}
	startDaemon(t, "--listen", "unix:"+sock, "--data-dir", dir) // the store and the socket are free again
}

func TestRefusesBadConfiguration(t *testing.T) {
	badPurposes := filepath.Join(t.TempDir(), "purposes.json")
	os.WriteFile(badPurposes, []byte(`{"purposes":[{"name":"Bad Name"}]}`), 0o600)
	tests := []struct {
		name string
		args []string
		code int
		says string
	}{
		{"help", []string{"--help"}, 0, "--data-dir"},
		{"unknown flag", []string{"--nope"}, 2, "flag provided but not defined"},
		{"stray argument", []string{"serve"}, 2, "unexpected arguments"},
		{"bad purposes file", []string{"--purposes", badPurposes, "--data-dir", t.TempDir()}, 1, "purposes[0].name"},
		{"missing purposes file", []string{"--purposes", "/nonexistent.json", "--data-dir", t.TempDir()}, 1, "nonexistent.json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := daemontest.Command(t, tt.args...)
			out, _ := cmd.CombinedOutput()
			if got := cmd.ProcessState.ExitCode(); got != tt.code || !strings.Contains(string(out), tt.says) {
				t.Errorf("exit %d, output %q; want exit %d mentioning %q", got, out, tt.code, tt.says)
			}
		})
	}
}
