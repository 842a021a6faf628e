// Package logthrottle keeps a flood of one kind of log line to one line a
// while. Refusals are the lines a caller controls: a client that sends bad
// requests in a loop would otherwise decide how much consentd logs. Each
// kind of line has a key (the caller's name and what happened); the first
// line of a key is written, then at most one an interval, and a written line
// reports how many of its key were suppressed since the one before.
package logthrottle

import (
	"sync"
	"time"
)

// Every is how often, at most, consentd writes a line of one key.
const Every = 10 * time.Second

// maxKeys bounds what a Throttle remembers. Keys are made of caller names,
// RPCs and codes, so there are few; the bound holds even against a caller
// that finds a way to vary them.
const maxKeys = 4096

// overflow is the key of the lines of new keys once maxKeys are in use:
// they share one allowance instead of growing the map.
const overflow = "\x00overflow"

// Throttle counts lines by key. Its zero value is not usable: see New.
type Throttle struct {
	every time.Duration
	mu    sync.Mutex
	keys  map[string]*entry
	swept time.Time // when forget last ran: at most once an interval
}

type entry struct {
	written    time.Time // when the last line of the key was written
	suppressed int       // lines of the key not written since
}

// New returns a Throttle that writes a line of a key at most once every
// interval.
func New(every time.Duration) *Throttle {
	return &Throttle{every: every, keys: map[string]*entry{}}
}

// Allow counts one line of key at now and says whether to write it; when it
// does, suppressed is the number of lines of key not written since the last
// one that was.
func (t *Throttle) Allow(key string, now time.Time) (suppressed int, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, seen := t.keys[key]
	if !seen {
		if len(t.keys) >= maxKeys && now.Sub(t.swept) >= t.every {
			t.forget(now)
		}
		if len(t.keys) >= maxKeys {
			key = overflow
			e, seen = t.keys[key]
		}
		if !seen {
			e = &entry{}
			t.keys[key] = e
		}
	}
	if seen && now.Sub(e.written) < t.every {
		e.suppressed++
		return 0, false
	}
	suppressed = e.suppressed
	e.written, e.suppressed = now, 0
	return suppressed, true
}

// forget drops the keys whose next line would be written anyway and has
// nothing to report: none suppressed, the last written an interval ago.
func (t *Throttle) forget(now time.Time) {
	t.swept = now
	for k, e := range t.keys {
		if e.suppressed == 0 && now.Sub(e.written) >= t.every {
			delete(t.keys, k)
		}
	}
}
