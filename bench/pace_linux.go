package bench

import (
	"context"
	"runtime"
	"syscall"
	"time"
)

// pinPacer gives the calling goroutine an OS thread of its own and cuts the
// thread's timer slack from the kernel's default 50 µs to 1 µs, so its
// sleeps end when asked. The goroutine must end while still locked: Go then
// retires the thread rather than reuse one whose slack was changed.
func pinPacer() {
	runtime.LockOSThread()
	const prSetTimerslack = 29
	syscall.RawSyscall(syscall.SYS_PRCTL, prSetTimerslack, 1, 0)
}

// sleepUntil sleeps in the kernel until t, in slices so a cancelled ctx is
// noticed, and reports whether ctx is still live.
func sleepUntil(ctx context.Context, t time.Time) bool {
	for {
		if ctx.Err() != nil {
			return false
		}
		wait := time.Until(t)
		if wait <= 0 {
			return true
		}
		ts := syscall.NsecToTimespec(int64(min(wait, 20*time.Millisecond)))
		syscall.Nanosleep(&ts, nil)
	}
}
