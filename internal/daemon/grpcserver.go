package daemon

import (
	"fmt"
	"math"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/consentd/consentd/server"
)

// ServerLimits bound what one client, or all of them, can make the gRPC
// server hold: FilterAudience's streams, gRPC's own buffers and
// connections.
type ServerLimits struct {
	Audience server.AudienceLimits

	MaxRecvBytes         int64
	MaxConcurrentStreams uint
	StreamWindow         int64

	KeepaliveMinTime time.Duration // the clients' pings: no more often
	KeepaliveTime    time.Duration // the server's pings on a quiet connection
	KeepaliveTimeout time.Duration
	MaxConnIdle      time.Duration
	MaxConnAge       time.Duration
	MaxConnAgeGrace  time.Duration
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

// check refuses limits that make no sense.
func (l ServerLimits) check() error {
	a := l.Audience
	switch {
	case a.Window < 1<<10:
		return fmt.Errorf("--audience-window-bytes: want at least 1024 bytes, got %d", a.Window)
	case a.MaxStreams < 1:
		return fmt.Errorf("--audience-max-streams: want at least 1, got %d", a.MaxStreams)
	case a.MaxBytes < a.Window:
		return fmt.Errorf("--audience-max-bytes: want at least --audience-window-bytes (%d), got %d", a.Window, a.MaxBytes)
	case !(a.CallerShare > 0 && a.CallerShare <= 1): // NaN fails both
		return fmt.Errorf("--audience-caller-share: want more than 0 and at most 1, got %v", a.CallerShare)
	case l.MaxRecvBytes < 1<<10 || l.MaxRecvBytes > math.MaxInt32:
		return fmt.Errorf("--grpc-max-recv-bytes: want 1024 to %d, got %d", math.MaxInt32, l.MaxRecvBytes)
	case l.MaxConcurrentStreams < 1 || l.MaxConcurrentStreams > math.MaxUint32:
		return fmt.Errorf("--grpc-max-concurrent-streams: want 1 to %d, got %d", uint32(math.MaxUint32), l.MaxConcurrentStreams)
	case l.StreamWindow < 65535 || l.StreamWindow > math.MaxInt32:
		return fmt.Errorf("--grpc-stream-window-bytes: want 65535 to %d, got %d", math.MaxInt32, l.StreamWindow)
	case l.KeepaliveMinTime <= 0:
		return fmt.Errorf("--grpc-keepalive-min-time: must be positive (gRPC reads 0 as 5m)")
	case l.KeepaliveTime < time.Second:
		return fmt.Errorf("--grpc-keepalive-time: want at least 1s, got %v", l.KeepaliveTime)
	case l.KeepaliveTimeout < time.Second:
		return fmt.Errorf("--grpc-keepalive-timeout: want at least 1s, got %v", l.KeepaliveTimeout)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"grpc-max-connection-idle", l.MaxConnIdle}, {"grpc-max-connection-age", l.MaxConnAge}, {"grpc-max-connection-age-grace", l.MaxConnAgeGrace}} {
		if d.v < 0 {
			return fmt.Errorf("--%s: must not be negative (0 is never)", d.name)
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
func (l ServerLimits) serverOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.StaticStreamWindowSize(int32(l.StreamWindow)),
		grpc.StaticConnWindowSize(connWindow),
		grpc.MaxRecvMsgSize(int(l.MaxRecvBytes)),
		grpc.MaxConcurrentStreams(uint32(l.MaxConcurrentStreams)),
		// The Go client pings every 30 s while it has calls in flight; a
		// client pinging more often than MinTime is disconnected.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: l.KeepaliveMinTime, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionIdle:     l.MaxConnIdle,
			MaxConnectionAge:      l.MaxConnAge,
			MaxConnectionAgeGrace: l.MaxConnAgeGrace,
			Time:                  l.KeepaliveTime,
			Timeout:               l.KeepaliveTimeout,
		}),
	}
}
