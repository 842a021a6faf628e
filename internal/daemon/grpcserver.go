package daemon

import (
	"flag"
	"fmt"
	"math"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/consentd/consentd/server"
)

// serverLimits bound what one client, or all of them, can make the gRPC
// server hold: FilterAudience's streams, gRPC's own buffers and
// connections.
type serverLimits struct {
	audience server.AudienceLimits

	maxRecvBytes         int64
	maxConcurrentStreams uint
	streamWindow         int64

	keepaliveMinTime time.Duration // the clients' pings: no more often
	keepaliveTime    time.Duration // the server's pings on a quiet connection
	keepaliveTimeout time.Duration
	maxConnIdle      time.Duration
	maxConnAge       time.Duration
	maxConnAgeGrace  time.Duration
}

// Defaults of the gRPC server's limits.
const (
	// The largest legitimate request is a BatchCheck of consent.MaxBatch
	// contacts, each as long as consent.MaxContactBytes allows: 3.2 MB on
	// the wire (TestMaxRecvBytesFitsLargestBatch). A WriteBatch of 10,000
	// writes with proof fields of common length is about 2 MB.
	defaultMaxRecvBytes = 4 << 20
	// Above consentbench's 256 workers on one connection, so one client's
	// concurrency is not queued; audience streams have their own cap.
	defaultMaxConcurrentStreams = 1000
	// gRPC's own initial window, kept static: see serverOptions.
	defaultStreamWindow = 64 << 10
	// connWindow is the connection's window. gRPC acknowledges connection
	// flow control on receipt, not when a stream's data is read, so it
	// buffers nothing (each stream's window does): it only lets many
	// streams of one connection send at once.
	connWindow = 1 << 20
)

// register defines the limits' flags on fs.
func (l *serverLimits) register(fs *flag.FlagSet) {
	fs.Int64Var(&l.audience.Window, "audience-window-bytes", server.DefaultAudienceWindow, "bytes one FilterAudience stream may hold of contacts read and not yet answered; it reads no more while its client does not read the answers")
	fs.IntVar(&l.audience.MaxStreams, "audience-max-streams", server.DefaultAudienceMaxStreams, "FilterAudience streams open at once; a stream beyond is refused with RESOURCE_EXHAUSTED")
	fs.Int64Var(&l.audience.MaxBytes, "audience-max-bytes", server.DefaultAudienceMaxBytes, "bytes all FilterAudience streams may hold together; a new stream without room for its window is refused with RESOURCE_EXHAUSTED")
	fs.Float64Var(&l.audience.CallerShare, "audience-caller-share", server.DefaultAudienceCallerShare, "with caller identity: the share (0 to 1) of -audience-max-streams and -audience-max-bytes one caller may hold")
	fs.Int64Var(&l.maxRecvBytes, "grpc-max-recv-bytes", defaultMaxRecvBytes, "largest request message in bytes; a larger one is refused with RESOURCE_EXHAUSTED")
	fs.UintVar(&l.maxConcurrentStreams, "grpc-max-concurrent-streams", defaultMaxConcurrentStreams, "calls in flight at once on one client connection; more wait in the client")
	fs.Int64Var(&l.streamWindow, "grpc-stream-window-bytes", defaultStreamWindow, "bytes of a call's request data gRPC buffers before the call reads them (HTTP/2 flow control window; at least 65535)")
	fs.DurationVar(&l.keepaliveMinTime, "grpc-keepalive-min-time", 15*time.Second, "the shortest interval between a client's keepalive pings; a client pinging more often is disconnected")
	fs.DurationVar(&l.keepaliveTime, "grpc-keepalive-time", time.Minute, "ping a client whose connection has been quiet this long, to find dead peers")
	fs.DurationVar(&l.keepaliveTimeout, "grpc-keepalive-timeout", 20*time.Second, "close a connection whose client does not answer a ping within this")
	fs.DurationVar(&l.maxConnIdle, "grpc-max-connection-idle", 15*time.Minute, "close a connection without calls for this long (the client reconnects when it needs to); 0: never")
	fs.DurationVar(&l.maxConnAge, "grpc-max-connection-age", time.Hour, "ask a client to reconnect after this long (±10%); calls in flight go on; 0: never")
	fs.DurationVar(&l.maxConnAgeGrace, "grpc-max-connection-age-grace", 0, "after -grpc-max-connection-age, cut calls still in flight after this long; 0: never (a long audience stream finishes)")
}

// check refuses limits that make no sense.
func (l serverLimits) check() error {
	a := l.audience
	switch {
	case a.Window < 1<<10:
		return fmt.Errorf("-audience-window-bytes: want at least 1024 bytes, got %d", a.Window)
	case a.MaxStreams < 1:
		return fmt.Errorf("-audience-max-streams: want at least 1, got %d", a.MaxStreams)
	case a.MaxBytes < a.Window:
		return fmt.Errorf("-audience-max-bytes: want at least -audience-window-bytes (%d), got %d", a.Window, a.MaxBytes)
	case !(a.CallerShare > 0 && a.CallerShare <= 1): // NaN fails both
		return fmt.Errorf("-audience-caller-share: want more than 0 and at most 1, got %v", a.CallerShare)
	case l.maxRecvBytes < 1<<10 || l.maxRecvBytes > math.MaxInt32:
		return fmt.Errorf("-grpc-max-recv-bytes: want 1024 to %d, got %d", math.MaxInt32, l.maxRecvBytes)
	case l.maxConcurrentStreams < 1 || l.maxConcurrentStreams > math.MaxUint32:
		return fmt.Errorf("-grpc-max-concurrent-streams: want 1 to %d, got %d", uint32(math.MaxUint32), l.maxConcurrentStreams)
	case l.streamWindow < 65535 || l.streamWindow > math.MaxInt32:
		return fmt.Errorf("-grpc-stream-window-bytes: want 65535 to %d, got %d", math.MaxInt32, l.streamWindow)
	case l.keepaliveMinTime <= 0:
		return fmt.Errorf("-grpc-keepalive-min-time: must be positive (gRPC reads 0 as 5m)")
	case l.keepaliveTime < time.Second:
		return fmt.Errorf("-grpc-keepalive-time: want at least 1s, got %v", l.keepaliveTime)
	case l.keepaliveTimeout < time.Second:
		return fmt.Errorf("-grpc-keepalive-timeout: want at least 1s, got %v", l.keepaliveTimeout)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"grpc-max-connection-idle", l.maxConnIdle}, {"grpc-max-connection-age", l.maxConnAge}, {"grpc-max-connection-age-grace", l.maxConnAgeGrace}} {
		if d.v < 0 {
			return fmt.Errorf("-%s: must not be negative (0 is never)", d.name)
		}
	}
	return nil
}

// serverOptions are the gRPC server's limits.
//
// The stream window is static: with gRPC's default, BDP estimation grows
// every stream's window up to 16 MiB on a fast link, and a stream whose
// handler does not read (FilterAudience waiting for its client) lets its
// client fill all of it: that, more than consentd's own queues, was the
// 34 MB a stream of issue 15. A static window holds at most that much of
// a stream's unread data; a call that reads a message larger than the
// window is still granted the whole message (gRPC widens the window for a
// pending read), so large BatchChecks are not slowed. On the way out, a
// stream's answers wait in gRPC for at most its 64 KiB write quota (fixed
// by gRPC) when the client does not read them.
func (l serverLimits) serverOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.StaticStreamWindowSize(int32(l.streamWindow)),
		grpc.StaticConnWindowSize(connWindow),
		grpc.MaxRecvMsgSize(int(l.maxRecvBytes)),
		grpc.MaxConcurrentStreams(uint32(l.maxConcurrentStreams)),
		// The Go client pings every 30 s while it has calls in flight; a
		// client pinging more often than MinTime is disconnected.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: l.keepaliveMinTime, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionIdle:     l.maxConnIdle,
			MaxConnectionAge:      l.maxConnAge,
			MaxConnectionAgeGrace: l.maxConnAgeGrace,
			Time:                  l.keepaliveTime,
			Timeout:               l.keepaliveTimeout,
		}),
	}
}
