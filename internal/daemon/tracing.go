package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc/filters"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc"
)

// checkTracing refuses tracing flags no flag parser catches.
func (c Config) checkTracing() error {
	// NaN fails both comparisons.
	if !(c.TraceSampleRatio >= 0 && c.TraceSampleRatio <= 1) {
		return fmt.Errorf("--trace-sample-ratio: want 0 to 1, got %v", c.TraceSampleRatio)
	}
	if c.OTLPEndpoint == "" {
		return nil
	}
	_, _, err := otlpTarget(c.OTLPEndpoint)
	return err
}

// otlpTarget is the collector's host:port and whether to reach it in
// plaintext. The scheme is OpenTelemetry's convention
// (OTEL_EXPORTER_OTLP_ENDPOINT): http:// is plaintext, https:// or none is
// TLS. A path is refused: OTLP/gRPC has none.
func otlpTarget(endpoint string) (hostport string, insecure bool, err error) {
	hostport = endpoint
	if scheme, rest, ok := strings.Cut(endpoint, "://"); ok && (scheme == "http" || scheme == "https") {
		hostport, insecure = strings.TrimSuffix(rest, "/"), scheme == "http"
	}
	if host, port, err := net.SplitHostPort(hostport); err != nil || host == "" || port == "" || strings.ContainsAny(hostport, "/?#@") {
		return "", false, fmt.Errorf("--otlp-endpoint: want host:port, https://host:port or http://host:port (plaintext), got %q", endpoint)
	}
	return hostport, insecure, nil
}

// traceFlushTimeout bounds how long stopping waits for the last spans to
// reach the collector: one that is down must not hold up a shutdown.
const traceFlushTimeout = 5 * time.Second

// flushTraces runs startTracing's shutdown, bounded by traceFlushTimeout.
func flushTraces(shutdown func(context.Context) error, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), traceFlushTimeout)
	defer cancel()
	if err := shutdown(ctx); err != nil {
		log.Warn("flushing traces", "error", err)
	}
}

// startTracing returns the server options that trace gRPC calls to the
// OTLP/gRPC collector at --otlp-endpoint, and a shutdown that flushes the
// spans still buffered and stops the exporter: call it once the server has
// stopped. Spans not sent when shutdown's ctx ends are dropped, and by the
// time it returns every goroutine of the SDK and the exporter has ended.
// Without --otlp-endpoint nothing is created: no options, and a shutdown that
// does nothing.
//
// Nothing global is set (no otel.SetTracerProvider, no global propagator):
// the provider and the propagator are handed to the stats handler, the only
// user.
func startTracing(ctx context.Context, c Config, log *slog.Logger) ([]grpc.ServerOption, func(context.Context) error, error) {
	if c.OTLPEndpoint == "" {
		return nil, func(context.Context) error { return nil }, nil
	}
	target, insecure, err := otlpTarget(c.OTLPEndpoint)
	if err != nil {
		return nil, nil, err
	}
	opts := []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(target)}
	if insecure {
		opts = append(opts, otlptracegrpc.WithInsecure())
	}
	// The exporter connects lazily: a collector that is down does not stop
	// consentd, it costs the spans of the meantime (logged, see
	// loggedExporter).
	raw, err := otlptracegrpc.New(ctx, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("--otlp-endpoint: %w", err)
	}
	abort := make(chan struct{})
	closeAbort := sync.OnceFunc(func() { close(abort) })
	exp := &loggedExporter{SpanExporter: raw, log: log, abort: abort}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", "consentd"))),
		// A caller's sampling decision (the traceparent flag) is kept, so a
		// trace is whole; calls that start a trace here are sampled at
		// --trace-sample-ratio.
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(c.TraceSampleRatio))),
	)
	h := otelgrpc.NewServerHandler(
		otelgrpc.WithTracerProvider(tp),
		// W3C trace context only: baggage is whatever a caller chose to
		// send (it could be a contact) and nothing here needs it.
		otelgrpc.WithPropagators(propagation.TraceContext{}),
		// Call metrics are Prometheus's (--metrics-listen); a no-op meter
		// keeps the handler off otel's global meter provider.
		otelgrpc.WithMeterProvider(noop.NewMeterProvider()),
		// Requests carry raw contacts, so spans must never hold a message.
		// otelgrpc never records message contents, and its only per-message
		// events (sizes, with WithMessageEvents) are off unless listed, as
		// here: none. What a span holds is the method, the status code, the
		// server address and, for server errors, the status message, which
		// consentd builds from keys and static reasons only (see
		// server.toStatus), as it does for its logs.
		otelgrpc.WithMessageEvents(),
		// Health checks are left out: probes call every few seconds, around
		// the clock, and a trace of one says nothing the probe did not.
		otelgrpc.WithFilter(filters.Not(filters.HealthCheck())),
	)
	shutdown := func(ctx context.Context) error {
		// Given a deadline, the SDK would return at it but leave its
		// goroutines exporting (retrying a collector that is down) for up to
		// its own timeouts, 30s and more. Instead it gets none, so it returns
		// only once they have ended, and the end of ctx aborts the exports
		// still running or queued.
		stop := context.AfterFunc(ctx, closeAbort)
		defer stop()
		return tp.Shutdown(context.WithoutCancel(ctx))
	}
	return []grpc.ServerOption{grpc.StatsHandler(h)}, shutdown, nil
}

// loggedExporter reports failed exports on consentd's log, structured like
// every other line. The SDK would otherwise hand them to otel's global error
// handler, which prints unstructured lines to stderr, and replacing that
// handler is setting a global. Once abort is closed, exports end at once.
type loggedExporter struct {
	sdktrace.SpanExporter
	log   *slog.Logger
	abort <-chan struct{}
}

func (e *loggedExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	ctx, cancel := context.WithCancel(ctx)
	// The watcher ends before ExportSpans returns: when the export does,
	// or when abort cuts it short.
	aborted := make(chan struct{})
	go func() {
		defer close(aborted)
		select {
		case <-e.abort:
			cancel()
		case <-ctx.Done():
		}
	}()
	err := e.SpanExporter.ExportSpans(ctx, spans)
	cancel()
	<-aborted
	if err == nil {
		return nil
	}
	select {
	case <-e.abort:
		e.log.Warn("trace export abandoned: spans dropped at shutdown", "spans", len(spans), "timeout", traceFlushTimeout)
	default:
		e.log.Warn("trace export failed: spans dropped", "spans", len(spans), "error", err)
	}
	return nil
}
