package store

import (
	"errors"
	"fmt"
	"io/fs"
	"syscall"
	"testing"

	"github.com/consentd/consentd/consent"
)

// TestDiskGuardFailed: a commit that failed for want of space, however bbolt
// reported it (wrapped, or as text only), becomes errDiskFull, which maps to
// RESOURCE_EXHAUSTED; any other failure is returned as it was.
func TestDiskGuardFailed(t *testing.T) {
	other := errors.New("store: corrupt encoding")
	tests := []struct {
		name string
		err  error
		full bool
	}{
		{"pwrite", &fs.PathError{Op: "write", Path: "consent.db", Err: syscall.ENOSPC}, true},
		{"fdatasync", syscall.ENOSPC, true},
		{"quota", fmt.Errorf("commit: %w", syscall.EDQUOT), true},
		{"bbolt's grow, as text", fmt.Errorf("file resize error: %s", syscall.ENOSPC), true},
		{"anything else", other, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := &diskGuard{dir: t.TempDir()}
			got := g.failed(tt.err)
			if full := errors.Is(got, consent.ErrExhausted); full != tt.full || g.full.Load() != tt.full {
				t.Errorf("failed(%v) = %v (full %v), want full %v", tt.err, got, g.full.Load(), tt.full)
			}
			if !tt.full && got != tt.err {
				t.Errorf("failed(%v) = %v, want it unchanged", tt.err, got)
			}
		})
	}
}

// TestDiskGuardProbes: while full, callers are refused without a probe
// until probeEvery has passed; then one probe finds room (a temporary
// directory has it) and clears the state.
func TestDiskGuardProbes(t *testing.T) {
	g := &diskGuard{dir: t.TempDir()}
	if err := g.ready(); err != nil {
		t.Fatalf("ready before any failure: %v", err)
	}
	g.failed(syscall.ENOSPC)
	if err := g.ready(); !errors.Is(err, consent.ErrExhausted) {
		t.Fatalf("ready right after a full disk: %v, want errDiskFull", err)
	}
	g.probedAt.Add(-int64(probeEvery)) // as if a second had passed
	if err := g.ready(); err != nil {
		t.Fatalf("ready once the probe finds room: %v", err)
	}
	if g.full.Load() {
		t.Error("still full after a probe found room")
	}
}
