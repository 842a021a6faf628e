package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/consentd/consentd/client"
)

// Contacts hands out contacts of a population as a sender would ask for
// them: drawn by a Picker (Zipf by default: a few contacts are mailed far
// more often than most). Safe for concurrent use.
type Contacts struct {
	names []string
	pick  Picker
	rngs  sync.Pool
}

// NewContacts draws from names with pick; seed makes runs repeatable.
func NewContacts(names []string, pick Picker, seed uint64) *Contacts {
	c := &Contacts{names: names, pick: pick}
	var n uint64
	var mu sync.Mutex
	c.rngs.New = func() any {
		mu.Lock()
		n++
		s := n
		mu.Unlock()
		return rand.New(rand.NewPCG(seed, s))
	}
	return c
}

// Next returns the next contact to ask about.
func (c *Contacts) Next() string {
	r := c.rngs.Get().(*rand.Rand)
	name := c.names[c.pick.Next(r)]
	c.rngs.Put(r)
	return name
}

// FloorOp is the empty call on the same server and transport: the health
// check. No Check can be faster.
func FloorOp(c *client.Client) Op {
	return func(ctx context.Context, _ int) error { return c.Health(ctx) }
}

// CheckOp asks about one contact for purpose; any answer is a success (a
// DENY is as much an answer as an ALLOW).
func CheckOp(c *client.Client, contacts *Contacts, purpose string) Op {
	return func(ctx context.Context, _ int) error {
		_, err := c.Check(ctx, contacts.Next(), purpose)
		if err != nil {
			return fmt.Errorf("check: %w", err)
		}
		return nil
	}
}

// FilterThroughput streams the whole audience through FilterAudience once
// and returns contacts per second, with the latency of the whole pass as a
// one-sample Result.
func FilterThroughput(ctx context.Context, c *client.Client, purpose string, audience []string) (*Result, float64, error) {
	start := time.Now()
	_, err := c.Filter(ctx, purpose, slices.Values(audience), func(string) error { return nil })
	elapsed := time.Since(start)
	res := &Result{Offered: 0}
	res.Record(elapsed, err)
	if err != nil {
		return res, 0, err
	}
	return res, float64(len(audience)) / elapsed.Seconds(), nil
}

// BatchThroughput checks the whole audience in BatchCheck calls of batch
// contacts, concurrency calls in flight, and returns contacts per second with
// the latency of each call.
func BatchThroughput(ctx context.Context, c *client.Client, purpose string, audience []string, batch, concurrency int) (*Result, float64, error) {
	res := &Result{}
	var mu sync.Mutex
	next := make(chan []string)
	var wg sync.WaitGroup
	start := time.Now()
	for range concurrency {
		wg.Go(func() {
			for chunk := range next {
				t := time.Now()
				_, err := c.BatchCheck(ctx, purpose, chunk)
				mu.Lock()
				res.Record(time.Since(t), err)
				mu.Unlock()
			}
		})
	}
	for chunk := range slices.Chunk(audience, batch) {
		select {
		case next <- chunk:
		case <-ctx.Done():
		}
	}
	close(next)
	wg.Wait()
	elapsed := time.Since(start)
	if res.Errors > 0 {
		return res, 0, fmt.Errorf("%d of %d BatchCheck calls failed: %v", res.Errors, res.Count, res.ErrorSamples)
	}
	return res, float64(len(audience)) / elapsed.Seconds(), ctx.Err()
}
