package daemon

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/consentd/consentd/internal/redisproc"
	"github.com/consentd/consentd/internal/redistest"
	pb "github.com/consentd/consentd/proto/consent/v1"
)

// healthClient connects to addr over plaintext TCP, as a Kubernetes gRPC
// probe or grpc-health-probe does.
func healthClient(t *testing.T, addr string) (*grpc.ClientConn, healthpb.HealthClient) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, healthpb.NewHealthClient(conn)
}

func checkHealth(t *testing.T, hc healthpb.HealthClient, service string) healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		t.Fatalf("Check(%q): %v", service, err)
	}
	return resp.GetStatus()
}

// TestHealthListener: --health-listen serves grpc.health.v1, and only that,
// over plaintext TCP; it reports what the main listener reports, also
// NOT_SERVING while shutting down, and stops with consentd.
func TestHealthListener(t *testing.T) {
	cfg := testConfig(t)
	cfg.HealthListen, cfg.ShutdownTimeout = "127.0.0.1:0", time.Second
	d := startDaemon(t, cfg)
	if d.health == "" || d.health == d.addr {
		t.Fatalf("consentd serving logged health address %q (main %q):\n%s", d.health, d.addr, d.logs)
	}
	conn, hc := healthClient(t, d.health)
	for _, service := range []string{"", pb.CheckService_ServiceDesc.ServiceName, pb.ConsentService_ServiceDesc.ServiceName} {
		if got := checkHealth(t, hc, service); got != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health listener: Check(%q) = %v, want SERVING", service, got)
		}
	}

	// Only health: the consent API is not reachable without the main
	// listener's credentials.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := pb.NewCheckServiceClient(conn).Check(ctx, &pb.CheckRequest{Contact: "ada@example.com", Purpose: "email_marketing"})
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("CheckService.Check on the health listener: err = %v, want Unimplemented", err)
	}

	// While in-flight calls on the main listener finish (here a Watch
	// stream, which holds shutdown for --shutdown-timeout), probes get
	// NOT_SERVING; once consentd stops, nothing listens there.
	_, mainHC := healthClient(t, d.addr)
	held, err := mainHC.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := held.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Watch on the main listener: first update %v, %v; want SERVING", resp, err)
	}
	d.cancel()
	for deadline := time.Now().Add(5 * time.Second); ; {
		if got := checkHealth(t, hc, ""); got == healthpb.HealthCheckResponse_NOT_SERVING {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("health listener during shutdown: %v after 5s, want NOT_SERVING", got)
		}
		time.Sleep(10 * time.Millisecond)
	}
	d.stop(t)
	if c, err := net.DialTimeout("tcp", d.health, time.Second); err == nil {
		c.Close()
		t.Fatalf("after consentd stopped, %s still accepts connections", d.health)
	}
}

// TestHealthListenerStoreDown: the health listener reports NOT_SERVING
// while Redis is down and SERVING again when it is back, like the main
// listener (they share one health.Server).
func TestHealthListenerStoreDown(t *testing.T) {
	r := redistest.Start(t, redisproc.Options{})
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, bytes.Repeat([]byte("k"), 32), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t)
	cfg.HealthListen = "127.0.0.1:0"
	cfg.RedisURL, cfg.RedisInit, cfg.SecretFile, cfg.Partitions = "redis://"+r.Addr(), true, secret, 2
	d := startDaemon(t, cfg)
	_, probe := healthClient(t, d.health)
	_, mainHC := healthClient(t, d.addr)
	waitFor := func(want healthpb.HealthCheckResponse_ServingStatus) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; {
			p, m := checkHealth(t, probe, ""), checkHealth(t, mainHC, "")
			if p == want && m == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("after 10s: health listener %v, main listener %v; want both %v", p, m, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitFor(healthpb.HealthCheckResponse_SERVING)
	r.Stop(t)
	waitFor(healthpb.HealthCheckResponse_NOT_SERVING)
	r.Restart(t)
	waitFor(healthpb.HealthCheckResponse_SERVING)
}

// TestHealthListenerBadAddress: an address that is not host:port, or one
// that cannot be listened on, stops consentd with an error naming the flag.
func TestHealthListenerBadAddress(t *testing.T) {
	var out bytes.Buffer
	cfg := testConfig(t)
	cfg.HealthListen = "8086"
	code := Run(context.Background(), cfg, &out)
	if want := `--health-listen: want host:port (127.0.0.1:8080, :8080), got "8086"`; code != 2 || !strings.Contains(out.String(), want) {
		t.Errorf("exit %d, output %q; want 2 and %q", code, out.String(), want)
	}

	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	out.Reset()
	cfg.HealthListen = taken.Addr().String()
	code = Run(context.Background(), cfg, &out)
	if want := "--health-listen: listen tcp " + taken.Addr().String() + ": bind: address already in use"; code != 1 || !strings.Contains(out.String(), want) {
		t.Errorf("exit %d, output %q; want 1 and %q", code, out.String(), want)
	}
}
