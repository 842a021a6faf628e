package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/consentd/consentd/consent"
	"github.com/consentd/consentd/internal/daemontest"
	pb "github.com/consentd/consentd/proto/consent/v1"
)

// smallFS mounts an 8 MiB tmpfs for the test and unmounts it afterwards
// (after the test's consentd is stopped: cleanups run last first). Mounting
// needs root (CI runs as root); without it the test fails and says so.
func smallFS(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=8m"); err != nil {
		t.Fatalf("cannot mount a small tmpfs to fill (the test needs root, as CI has): %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// fill writes a file into dir until its file system has no room left.
func fill(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for {
		// The last write fills what room is left, and fails.
		if _, err := f.Write(chunk); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return path
			}
			t.Fatal(err)
		}
	}
}

// TestEmbeddedDiskFull fills the embedded store's file system under a
// running consentd: the write that finds no room gets RESOURCE_EXHAUSTED
// saying so (not INTERNAL), health goes NOT_SERVING, and writes are refused
// while the disk is full; once space is freed, health is SERVING again on
// its own, the refused write goes through on retry, and after a SIGKILL and
// a restart every acknowledged write is there and the history verifies.
func TestEmbeddedDiskFull(t *testing.T) {
	dir := smallFS(t)
	d := startDaemon(t, "--data-dir", dir)
	conn := dial(t, d.Addr)
	cons, hc := pb.NewConsentServiceClient(conn), healthpb.NewHealthClient(conn)
	grant := func(i int) error {
		_, err := cons.Grant(testCtx(t), &pb.GrantRequest{Contact: fmt.Sprintf("full%d@example.com", i),
			Purposes: []string{"email_marketing"}, Method: pb.Method_METHOD_CHECKBOX, RequestId: fmt.Sprint("g", i)})
		return err
	}
	health := func() healthpb.HealthCheckResponse_ServingStatus {
		resp, err := hc.Check(testCtx(t), &healthpb.HealthCheckRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetStatus()
	}
	// waitHealth polls for want, failing past limit (well beyond what the
	// watch interval and the probe interval add up to), and returns how
	// long it took.
	waitHealth := func(want healthpb.HealthCheckResponse_ServingStatus, limit time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		for got := health(); got != want; got = health() {
			if time.Since(start) > limit {
				t.Fatalf("health %v after %v, want %v", got, limit, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
		return time.Since(start)
	}
	const wantMsg = "the embedded store's disk is full: writes cannot be made durable"

	acked := 0
	for ; acked < 20; acked++ {
		if err := grant(acked); err != nil {
			t.Fatal(err)
		}
	}
	filler := fill(t, dir)
	// Writes may still fit in pages the file has freed; one that needs a
	// new page finds no room.
	var err error
	for ; acked < 5000; acked++ {
		if err = grant(acked); err != nil {
			break
		}
	}
	t.Logf("%d writes acknowledged, %d of them after the disk filled", acked, acked-20)
	if st := status.Convert(err); st.Code() != codes.ResourceExhausted || st.Message() != wantMsg {
		t.Fatalf("write on a full disk: %v %q, want %v %q", st.Code(), st.Message(), codes.ResourceExhausted, wantMsg)
	}
	refused := acked
	t.Logf("NOT_SERVING %v after the refused write", waitHealth(healthpb.HealthCheckResponse_NOT_SERVING, 5*time.Second))
	// Through the Go client too, which gives it its sentinel.
	_, err = daemontest.Client(t, d.Addr).Grant(testCtx(t), &pb.GrantRequest{Contact: "another@example.com",
		Purposes: []string{"email_marketing"}, Method: pb.Method_METHOD_CHECKBOX})
	if !errors.Is(err, consent.ErrExhausted) || !strings.Contains(err.Error(), wantMsg) {
		t.Errorf("another write while full: %v, want consent.ErrExhausted saying %q", err, wantMsg)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	t.Logf("SERVING %v after space was freed", waitHealth(healthpb.HealthCheckResponse_SERVING, 10*time.Second))
	for i := refused; i < refused+5; i++ {
		if err := grant(i); err != nil {
			t.Fatalf("write %d after space was freed: %v", i, err)
		}
	}
	acked = refused + 5

	d.Kill()
	d = startDaemon(t, "--data-dir", dir)
	conn = dial(t, d.Addr)
	check := pb.NewCheckServiceClient(conn)
	for i := range acked {
		resp, err := check.Check(testCtx(t), &pb.CheckRequest{Contact: fmt.Sprintf("full%d@example.com", i), Purpose: "email_marketing"})
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetDecision() != pb.Decision_DECISION_ALLOW {
			t.Errorf("acknowledged grant %d after the restart: %v, want ALLOW", i, resp.GetDecision())
		}
	}
	v, err := pb.NewConsentServiceClient(conn).VerifyHistory(testCtx(t), &pb.VerifyHistoryRequest{})
	if err != nil || !v.GetIntact() {
		t.Errorf("VerifyHistory after the restart: %v, %v; want intact", v, err)
	}
}
