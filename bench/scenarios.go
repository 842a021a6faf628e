package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/consentd/consentd/client"
	pb "github.com/consentd/consentd/proto/consent/v1"
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

// Propagation measures how long a withdrawal takes to reach another
// sidecar: for each contact, it grants on a, waits until b allows (so b has
// the record cached), withdraws on a and, from the moment a acknowledged,
// asks b as fast as it answers until b denies. Each delay is one sample; a
// withdrawal b has not denied within timeout is an error. The resolution is
// one Check round trip on b.
func Propagation(ctx context.Context, a, b *client.Client, contacts []string, purpose string, timeout time.Duration) (*Result, error) {
	res := &Result{}
	until := func(contact string, want bool) (time.Duration, error) {
		start := time.Now()
		for {
			d, err := b.Check(ctx, contact, purpose)
			if err == nil && d.Allowed == want {
				return time.Since(start), nil
			}
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			if time.Since(start) > timeout {
				return 0, fmt.Errorf("b still answers %v (%v) for %s after %v", d.Reason, err, contact, timeout)
			}
		}
	}
	for _, contact := range contacts {
		if _, err := a.Grant(ctx, &pb.GrantRequest{Contact: contact, Purposes: []string{purpose}, Method: pb.Method_METHOD_CHECKBOX}); err != nil {
			return res, fmt.Errorf("grant on a: %w", err)
		}
		if _, err := until(contact, true); err != nil {
			return res, fmt.Errorf("waiting for b to allow: %w", err)
		}
		if _, err := a.Withdraw(ctx, &pb.WithdrawRequest{Contact: contact, Purposes: []string{purpose}}); err != nil {
			return res, fmt.Errorf("withdraw on a: %w", err)
		}
		d, err := until(contact, false)
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		res.Record(d, err)
	}
	return res, nil
}
