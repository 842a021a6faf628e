package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"

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
