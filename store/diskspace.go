package store

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/consentd/consentd/consent"
)

// A full disk on the embedded store. A commit that fails for want of space
// leaves bbolt sound (read in go.etcd.io/bbolt v1.5.0, tx.go Commit): the
// failure comes while the transaction's new pages are written (tx.write:
// pwrite or fdatasync), before the meta page that would point at them, and
// the rollback reloads the free list from the last committed meta. Those
// pages were free in that commit, so nothing acknowledged is touched and the
// same *bolt.DB goes on; no reopen is needed. (A failure while writing the
// meta page itself, which overwrites a page allocated when the file was
// created, needs no new space on tmpfs or ext4; were it to fail, it fails
// on the meta slot of the commit before the last acknowledged one, which
// stays intact, so at worst the unacknowledged write turns out applied,
// and a retry with its request id finds it.)
//
// What the store adds: the failure becomes errDiskFull (RESOURCE_EXHAUSTED,
// the code gRPC names for "the entire file system is out of space": a retry
// soon will not help, an operator must act), writes are refused without
// touching the file and Ping reports it while the disk is full, and a probe,
// at most once a second and only while full, notices when there is room
// again.

// errDiskFull is what a write and Ping answer while the disk is full.
var errDiskFull error = exhaustedError("the embedded store's disk is full: writes cannot be made durable")

type exhaustedError string

func (e exhaustedError) Error() string { return string(e) }

// Is makes errors.Is(err, consent.ErrExhausted) true.
func (e exhaustedError) Is(target error) bool { return target == consent.ErrExhausted }

const (
	// probeEvery is how often, at most, a full disk is probed for room.
	probeEvery = time.Second
	// headroom is the free space a probe wants before writes resume: a
	// little room would only let the next write fail again.
	headroom = 1 << 20
	// probeFile is written, synced and removed by a probe, beside the
	// database file.
	probeFile = EmbeddedFile + ".probe"
)

// diskGuard knows whether the store's disk had no room for the last
// commit, and probes for room again.
type diskGuard struct {
	dir  string
	full atomic.Bool
	// probedAt is when the disk was last found full (UnixNano), by a
	// failed commit or a probe.
	probedAt atomic.Int64
	// probing is held by the one caller that probes; the others do not
	// wait for it (a probe syncs a file, which a sick disk can make slow).
	probing sync.Mutex
}

// failed returns what to answer for a commit that failed with err:
// errDiskFull, noting the disk full, when it failed for want of space.
func (g *diskGuard) failed(err error) error {
	if !noSpace(err) {
		return err
	}
	g.probedAt.Store(time.Now().UnixNano())
	g.full.Store(true)
	return errDiskFull
}

// ready returns errDiskFull while the disk is known to be full. At most
// once per probeEvery a caller probes instead, and finding room, clears the
// state and returns nil.
func (g *diskGuard) ready() error {
	if !g.full.Load() {
		return nil
	}
	if time.Since(time.Unix(0, g.probedAt.Load())) < probeEvery || !g.probing.TryLock() {
		return errDiskFull
	}
	defer g.probing.Unlock()
	if !g.full.Load() {
		return nil
	}
	start := time.Now().UnixNano()
	g.probedAt.Store(start)
	if !hasRoom(g.dir) {
		return errDiskFull
	}
	// Unless a commit failed for want of space meanwhile.
	if g.probedAt.Load() == start {
		g.full.Store(false)
	}
	return nil
}

// hasRoom reports whether dir's file system has headroom free and takes a
// synced write there: statfs alone cannot see a quota.
func hasRoom(dir string) bool {
	if free, ok := freeBytes(dir); ok && free < headroom {
		return false
	}
	path := filepath.Join(dir, probeFile)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return false
	}
	_, err = f.Write(make([]byte, os.Getpagesize()))
	if err == nil {
		err = f.Sync()
	}
	f.Close()
	os.Remove(path)
	return err == nil
}

// noSpace reports whether err is the file system refusing a write for want
// of space or quota. bbolt reports some of its I/O errors as text only.
func noSpace(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, syscall.ENOSPC.Error()) || strings.Contains(msg, syscall.EDQUOT.Error())
}
