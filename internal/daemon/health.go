package daemon

import (
	"fmt"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// healthListener is the --health-listen listener: plaintext gRPC serving
// only grpc.health.v1, from the main listener's health.Server, so a
// Kubernetes gRPC probe needs no certificate once the main listener has TLS
// and sees the same NOT_SERVING (store down, shutting down). Like the web
// listeners it is started and stopped with consentd; it has no interceptors,
// so probes every few seconds neither log nor count as calls.
type healthListener struct {
	srv    *grpc.Server
	addr   string
	served chan error
	done   chan struct{} // closed when Serve has returned
}

// startHealth listens on addr (host:port) and serves hs.
func startHealth(addr string, hs *health.Server) (*healthListener, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("-health-listen: %w", err)
	}
	h := &healthListener{srv: grpc.NewServer(), addr: lis.Addr().String(), served: make(chan error, 1), done: make(chan struct{})}
	healthpb.RegisterHealthServer(h.srv, hs)
	go func() { h.served <- h.srv.Serve(lis); close(h.done) }()
	return h, nil
}

// failed delivers the error that ended serving early; nil never does.
func (h *healthListener) failed() <-chan error {
	if h == nil {
		return nil
	}
	return h.served
}

// close stops at once and waits for Serve to return. Health calls are
// answered from memory, so nothing is worth waiting for, and a graceful stop
// would wait for every open Watch stream.
func (h *healthListener) close() {
	if h == nil {
		return
	}
	h.srv.Stop()
	<-h.done
}
