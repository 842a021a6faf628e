package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	pb "github.com/consentd/consentd/proto/consent/v1"
)

// The test binary doubles as consentd: tests start it as a real process with
// this variable set, so SIGKILL and SIGTERM hit a real daemon.
const asMain = "CONSENTD_TEST_AS_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(asMain) == "1" {
		main()
		return
	}
	goleak.VerifyTestMain(m)
}

type daemon struct {
	cmd    *exec.Cmd
	addr   string
	http   string // the unsubscribe listener, when started with --http
	exited chan struct{}
	logs   *strings.Builder
}

// startDaemon runs consentd with args and waits until it serves. It is
// killed by PID when the test ends, whatever happened.
func startDaemon(t *testing.T, args ...string) *daemon {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"--log-format", "json", "--log-level", "debug"}, args...)...)
	cmd.Env = append(os.Environ(), asMain+"=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &daemon{cmd: cmd, exited: make(chan struct{}), logs: &strings.Builder{}}
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-d.exited
	})
	type serving struct{ Msg, Addr, HTTP string }
	ready := make(chan serving, 1)
	lines := make(chan string, 1024)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var rec serving
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "consentd serving" {
				ready <- rec
			}
			select {
			case lines <- sc.Text():
			default:
			}
		}
		cmd.Wait()
		close(lines)
		close(d.exited)
	}()
	go func() {
		for l := range lines {
			d.logs.WriteString(l + "\n")
		}
	}()
	select {
	case rec := <-ready:
		d.addr, d.http = rec.Addr, rec.HTTP
	case <-d.exited:
		t.Fatalf("consentd exited before serving: %v", cmd.ProcessState)
	case <-time.After(30 * time.Second):
		t.Fatal("consentd did not start within 30s")
	}
	return d
}

func (d *daemon) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := d.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

func (d *daemon) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-d.exited:
		return d.cmd.ProcessState.ExitCode()
	case <-time.After(30 * time.Second):
		t.Fatal("consentd did not exit within 30s")
		return -1
	}
}

func dial(t *testing.T, target string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
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
	cons := pb.NewConsentServiceClient(dial(t, d.addr))
	const n = 50
	for i := range n {
		_, err := cons.Grant(testCtx(t), &pb.GrantRequest{Contact: fmt.Sprintf("k%d@example.com", i),
			Purposes: []string{"email_marketing"}, Method: pb.Method_METHOD_CHECKBOX, RequestId: fmt.Sprint("g", i)})
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cons.Withdraw(testCtx(t), &pb.WithdrawRequest{Contact: "k7@example.com", RequestId: "w7"}); err != nil {
		t.Fatal(err)
	}
	d.signal(t, syscall.SIGKILL)
	d.wait(t)

	d2 := startDaemon(t, "--listen", "127.0.0.1:0", "--data-dir", dir)
	conn := dial(t, d2.addr)
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
	if resp.GetToken() != "AQAE" { // the fourth write of the first run
		t.Errorf("retried grant token = %q, want the original AQAE", resp.GetToken())
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
	d.signal(t, syscall.SIGTERM)
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
	if code := d.wait(t); code != 0 {
		t.Errorf("exit code after SIGTERM = %d, want 0\n%s", code, d.logs)
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
		{"help", []string{"--help"}, 0, "-data-dir"},
		{"unknown flag", []string{"--nope"}, 2, "flag provided but not defined"},
		{"stray argument", []string{"serve"}, 2, "unexpected arguments"},
		{"bad purposes file", []string{"--purposes", badPurposes, "--data-dir", t.TempDir()}, 1, "purposes[0].name"},
		{"missing purposes file", []string{"--purposes", "/nonexistent.json", "--data-dir", t.TempDir()}, 1, "nonexistent.json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], tt.args...)
			cmd.Env = append(os.Environ(), asMain+"=1")
			out, _ := cmd.CombinedOutput()
			if got := cmd.ProcessState.ExitCode(); got != tt.code || !strings.Contains(string(out), tt.says) {
				t.Errorf("exit %d, output %q; want exit %d mentioning %q", got, out, tt.code, tt.says)
			}
		})
	}
}
