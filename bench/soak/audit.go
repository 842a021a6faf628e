package soak

import (
	"context"
	"sync"
	"time"

	pb "github.com/consentd/consentd/proto/consent/v1"
)

// audit is one full read of every contact of the load.
type audit struct {
	at     time.Time
	unread int // contacts no sidecar answered for
}

// auditWorkers is how many GetContact calls an audit has in flight.
const auditWorkers = 8

// audit reads every contact with GetContact (a fully consistent read of
// the store) on sidecar side, or, with side -1, on either (the final
// audit, which must read every contact). The reads go to the oracle.
func (e *env) audit(ctx context.Context, l *load, side int) audit {
	a := audit{at: time.Now()}
	next := make(chan int)
	var (
		wg sync.WaitGroup
		mu sync.Mutex
	)
	for range auditWorkers {
		wg.Go(func() {
			for c := range next {
				if !e.read(ctx, l, c, side) {
					mu.Lock()
					a.unread++
					mu.Unlock()
				}
			}
		})
	}
	for c := range l.names {
		next <- c
	}
	close(next)
	wg.Wait()
	return a
}

// read reads contact c into the oracle, trying a few times (and, with side
// -1, both sidecars), and reports whether it could.
func (e *env) read(ctx context.Context, l *load, c, side int) bool {
	sides := []int{side}
	if side < 0 {
		sides = []int{0, 1}
	}
	for attempt := range 3 {
		for _, s := range sides {
			rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			start := time.Now()
			resp, err := e.sidecars[s].client.GetContact(rctx, l.names[c])
			end := time.Now()
			cancel()
			if err != nil {
				continue
			}
			rd := Read{Contact: c, Sidecar: s, Start: start, End: end, Allowed: make([]bool, len(l.purposes))}
			for _, ps := range resp.GetPurposes() {
				for i, name := range l.purposes {
					if ps.GetPurpose() == name {
						rd.Allowed[i] = ps.GetDecision() == pb.Decision_DECISION_ALLOW
					}
				}
			}
			l.rec.Read(rd)
			return true
		}
		if !sleep(ctx, time.Duration(attempt+1)*200*time.Millisecond) {
			return false
		}
	}
	return false
}
