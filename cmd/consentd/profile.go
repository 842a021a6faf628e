//go:build profile

package main

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
)

// Built with -tags profile (consentbench does, for --cpuprofile and
// --memprofile), consentd writes a CPU profile of its whole run to
// $CONSENTBENCH_CPUPROFILE and a heap profile, as it stops, to
// $CONSENTBENCH_MEMPROFILE, when they name files.
const (
	cpuProfileEnv = "CONSENTBENCH_CPUPROFILE"
	memProfileEnv = "CONSENTBENCH_MEMPROFILE"
)

// profiled runs run, profiled as the environment asks.
func profiled(run func() int) int {
	if path := os.Getenv(cpuProfileEnv); path != "" {
		f, err := os.Create(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, "consentd:", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "consentd:", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	code := run()
	if path := os.Getenv(memProfileEnv); path != "" {
		runtime.GC() // the heap as the last collection left it, up to date
		f, err := os.Create(path)
		if err == nil {
			err = errors.Join(pprof.WriteHeapProfile(f), f.Close())
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "consentd:", err)
			return 1
		}
	}
	return code
}
