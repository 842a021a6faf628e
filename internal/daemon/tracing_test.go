package daemon

import (
	"context"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/consentd/consentd/client"
	pb "github.com/consentd/consentd/proto/consent/v1"
)

// traceReceiver is an OTLP/gRPC trace collector on a loopback port that
// keeps every export it receives.
type traceReceiver struct {
	coltracepb.UnimplementedTraceServiceServer
	addr string

	mu   sync.Mutex
	reqs []*coltracepb.ExportTraceServiceRequest
}

// startReceiver serves a traceReceiver until the test ends.
func startReceiver(t *testing.T) *traceReceiver {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &traceReceiver{addr: lis.Addr().String()}
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, r)
	served := make(chan struct{})
	go func() { srv.Serve(lis); close(served) }()
	t.Cleanup(func() { srv.Stop(); <-served })
	return r
}

func (r *traceReceiver) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reqs = append(r.reqs, req)
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

// received returns the exports so far, and every span in them.
func (r *traceReceiver) received() ([]*coltracepb.ExportTraceServiceRequest, []*tracepb.Span) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var spans []*tracepb.Span
	for _, req := range r.reqs {
		for _, rs := range req.GetResourceSpans() {
			for _, ss := range rs.GetScopeSpans() {
				spans = append(spans, ss.GetSpans()...)
			}
		}
	}
	return append([]*coltracepb.ExportTraceServiceRequest(nil), r.reqs...), spans
}

// The contact of the tracing tests: no part of it may reach a collector.
const contactTraced = "Tracy.Spans@Example.com"

var contactTracedParts = []string{"tracy", "spans@", "example.com"}

// TestTracing runs consentd in-process with --otlp-endpoint pointing at a
// real OTLP receiver, makes calls that carry a W3C traceparent, and checks
// what reached the receiver once consentd stopped (stopping flushes).
func TestTracing(t *testing.T) {
	rcv := startReceiver(t)
	cfg := testConfig(t)
	cfg.OTLPEndpoint = "http://" + rcv.addr
	d := startDaemon(t, cfg)

	const (
		traceID  = "4bf92f3577b34da6a3ce929d0e0e4736"
		parentID = "00f067aa0ba902b7"
	)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "traceparent", "00-"+traceID+"-"+parentID+"-01")
	c, err := client.New(d.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Grant(ctx, &pb.GrantRequest{Contact: contactTraced, Purposes: []string{"email_marketing"},
		Method: pb.Method_METHOD_CHECKBOX, NoticeVersion: "2026-05", EvidenceRef: "form:1", Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	dec, err := c.Check(ctx, contactTraced, "email_marketing", client.FullyConsistent())
	if err != nil {
		t.Fatal(err)
	}
	if !dec.Allowed {
		t.Fatalf("Check = %+v, want allowed", dec)
	}
	// A probe's health check, which is not traced.
	_, hc := healthClient(t, d.addr)
	if got := checkHealth(t, hc, ""); got != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v", got)
	}
	d.stop(t)

	reqs, spans := rcv.received()
	type spanSummary struct {
		Kind            tracepb.Span_SpanKind
		TraceID, Parent string
	}
	got := map[string]spanSummary{}
	for _, s := range spans {
		got[s.GetName()] = spanSummary{s.GetKind(), hex.EncodeToString(s.GetTraceId()), hex.EncodeToString(s.GetParentSpanId())}
	}
	// Both calls are children of the caller's span; nothing else was
	// traced (no health check).
	want := map[string]spanSummary{
		"consent.v1.ConsentService/Grant": {tracepb.Span_SPAN_KIND_SERVER, traceID, parentID},
		"consent.v1.CheckService/Check":   {tracepb.Span_SPAN_KIND_SERVER, traceID, parentID},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("spans received (-want +got):\n%s", diff)
	}
	for _, req := range reqs {
		for _, rs := range req.GetResourceSpans() {
			var service string
			for _, kv := range rs.GetResource().GetAttributes() {
				if kv.GetKey() == "service.name" {
					service = kv.GetValue().GetStringValue()
				}
			}
			if service != "consentd" {
				t.Errorf("resource service.name = %q, want consentd", service)
			}
		}
		// Everything sent: names, attributes, events, status, resource.
		b, err := protojson.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		lower := strings.ToLower(string(b))
		var found []string
		for _, part := range contactTracedParts {
			if strings.Contains(lower, part) {
				found = append(found, part)
			}
		}
		if found != nil {
			t.Errorf("an export contains %q, parts of the test contact:\n%s", found, b)
		}
	}
}

// TestTracingOff: without --otlp-endpoint no tracing is set up, even with
// OpenTelemetry's own variables set, and nothing is exported.
func TestTracingOff(t *testing.T) {
	rcv := startReceiver(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+rcv.addr)
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://"+rcv.addr)

	opts, shutdown, err := startTracing(context.Background(), DefaultConfig(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if len(opts) != 0 {
		t.Errorf("startTracing without -otlp-endpoint: %d server options, want none", len(opts))
	}
	if err := shutdown(context.Background()); err != nil {
		t.Errorf("shutdown: %v", err)
	}

	d := startDaemon(t, testConfig(t))
	cl, err := client.New(d.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	if _, err := cl.Check(ctx, contactTraced, "email_marketing"); err != nil {
		t.Fatal(err)
	}
	d.stop(t)
	if reqs, _ := rcv.received(); len(reqs) != 0 {
		t.Errorf("without -otlp-endpoint, %d exports reached the collector", len(reqs))
	}
}

// TestOTLPTarget: what the exporter dials for --otlp-endpoint, and the
// endpoints refused.
func TestOTLPTarget(t *testing.T) {
	const wantErr = `--otlp-endpoint: want host:port, https://host:port or http://host:port (plaintext), got `
	for _, tc := range []struct {
		endpoint    string
		target      string
		insecure    bool
		wantRefused bool
	}{
		{endpoint: "otel-collector:4317", target: "otel-collector:4317"},
		{endpoint: "https://otel-collector:4317", target: "otel-collector:4317"},
		{endpoint: "http://127.0.0.1:4317/", target: "127.0.0.1:4317", insecure: true},
		{endpoint: "http://[::1]:4317", target: "[::1]:4317", insecure: true},
		{endpoint: "otel-collector", wantRefused: true},
		{endpoint: ":4317", wantRefused: true},
		{endpoint: "https://otel-collector", wantRefused: true},
		{endpoint: "grpc://otel-collector:4317", wantRefused: true},
		{endpoint: "http://otel-collector:4318/v1/traces", wantRefused: true},
		{endpoint: "4317", wantRefused: true},
	} {
		target, insecure, err := otlpTarget(tc.endpoint)
		if tc.wantRefused {
			if want := wantErr + fmt.Sprintf("%q", tc.endpoint); err == nil || err.Error() != want {
				t.Errorf("otlpTarget(%q): %v, want %q", tc.endpoint, err, want)
			}
			continue
		}
		if err != nil || target != tc.target || insecure != tc.insecure {
			t.Errorf("otlpTarget(%q) = %q, %v, %v; want %q, %v", tc.endpoint, target, insecure, err, tc.target, tc.insecure)
		}
	}
}

// TestTracingCollectorDown: a collector that does not answer costs the
// spans, logged, never a call; stopping waits for it at most
// traceFlushTimeout.
func TestTracingCollectorDown(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := lis.Addr().String()
	lis.Close()
	cfg := testConfig(t)
	cfg.OTLPEndpoint = "http://" + down
	d := startDaemon(t, cfg)
	c, err := client.New(d.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.Check(ctx, contactTraced, "email_marketing"); err != nil {
		t.Fatalf("Check with the collector down: %v", err)
	}
	start := time.Now()
	logs := d.stop(t)
	if took := time.Since(start); took > traceFlushTimeout+5*time.Second {
		t.Errorf("stopping took %v with the collector down, want about %v at most", took, traceFlushTimeout)
	}
	if !strings.Contains(logs, "spans dropped") {
		t.Errorf("the logs do not say spans were dropped:\n%s", logs)
	}
	if strings.Contains(strings.ToLower(logs), "tracy") {
		t.Errorf("the logs name the test contact:\n%s", logs)
	}
}
