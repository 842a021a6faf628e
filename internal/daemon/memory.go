package daemon

import (
	"context"
	"log/slog"
	"runtime"
	"runtime/debug"
	"time"
)

// After a burst of audience streams ends, what they held is garbage that
// Go keeps: an idle process runs no collection until the forced one every
// 2 minutes, and the scavenger then returns freed pages a little at a time.
// Measured (TestSlowAudienceReaders, 200 streams of unread answers): RSS
// came back near idle only 4 minutes after the streams ended. So once the
// bytes the streams hold have stayed below a quarter of a peak of
// burstBytes or more for a second (the streams' gRPC buffers are let go
// as they close), consentd collects twice and returns the free memory at
// once (debug.FreeOSMemory). Twice, because gRPC keeps its message buffers
// in sync.Pools, which one collection only moves to their victim caches:
// with a single one, 33 MB more than idle stayed live. Two full
// collections per burst, at most once every freeEvery, and none during the
// steady traffic of a few streams, whose garbage the collector handles as
// it goes.
const (
	burstBytes = 16 << 20
	freeEvery  = 10 * time.Second
	watchEvery = time.Second
)

// audienceHeld is the server's account of what FilterAudience streams hold
// (server.Server).
type audienceHeld interface {
	AudienceHeld() (now, peak int64)
}

// returnMemory gives the memory of each audience burst back to the system
// once it is over, until ctx is done.
func returnMemory(ctx context.Context, a audienceHeld, log *slog.Logger) {
	t := time.NewTicker(watchEvery)
	defer t.Stop()
	var (
		peak  int64
		quiet int // ticks the burst has been over
		last  time.Time
	)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now, p := a.AudienceHeld()
		peak = max(peak, p)
		if peak < burstBytes || max(now, p) > peak/4 {
			quiet = 0
			continue
		}
		if quiet++; quiet < 2 || time.Since(last) < freeEvery {
			continue
		}
		start := time.Now()
		runtime.GC()
		debug.FreeOSMemory()
		last = time.Now()
		log.Info("audience burst over: memory returned to the system", "peak_bytes", peak, "held_bytes", now, "elapsed", last.Sub(start))
		peak = now
	}
}
