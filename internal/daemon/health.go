package daemon

import (
	"context"
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
	srv *grpc.Server
	lis net.Listener
}

// startHealth listens on addr (host:port), to serve hs.
func startHealth(addr string, hs *health.Server) (*healthListener, net.Addr, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	h := &healthListener{srv: grpc.NewServer(), lis: lis}
	healthpb.RegisterHealthServer(h.srv, hs)
	return h, lis.Addr(), nil
}

func (h *healthListener) serve() error { return h.srv.Serve(h.lis) }

// shutdown is close: see there.
func (h *healthListener) shutdown(context.Context) { h.close() }

// close stops at once. Health calls are answered from memory, so nothing is
// worth waiting for, and a graceful stop would wait for every open Watch
// stream.
func (h *healthListener) close() { h.srv.Stop() }
