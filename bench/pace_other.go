//go:build !linux

package bench

import (
	"context"
	"time"
)

func pinPacer() {}

// sleepUntil waits for t on a Go timer: elsewhere than Linux the pacer is as
// precise as the runtime's timers.
func sleepUntil(ctx context.Context, t time.Time) bool {
	wait := time.Until(t)
	if wait <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return ctx.Err() == nil
	}
}
