package redistest

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/consentd/consentd/internal/redisproc"
)

const (
	numSlots       = 16384
	clusterTimeout = 20 * time.Second
	migrateBatch   = 100
)

// Cluster is a Redis Cluster of masters without replicas.
type Cluster struct {
	Nodes []*Server
}

// StartCluster starts masters cluster-enabled servers, splits slots
// 0..16383 evenly between them (CLUSTER ADDSLOTSRANGE), joins them (CLUSTER
// MEET) and returns once every node reports cluster_state:ok and every node's
// CLUSTER SLOTS agrees on the owner of all 16384 slots. That takes a little
// over 2 s: a master reports ok no sooner than 2 s after it started.
func StartCluster(t testing.TB, masters int) *Cluster {
	t.Helper()
	if masters < 1 {
		t.Fatalf("redistest: StartCluster with %d masters", masters)
	}
	c := &Cluster{}
	for range masters {
		c.Nodes = append(c.Nodes, Start(t, redisproc.Options{Cluster: true}))
	}
	ctx, cancel := opCtx()
	defer cancel()
	for i, n := range c.Nodes {
		// A distinct epoch per node, as redis-cli --cluster create does, so
		// no epoch collision has to be resolved later.
		if err := n.admin.Do(ctx, "CLUSTER", "SET-CONFIG-EPOCH", i+1).Err(); err != nil {
			t.Fatalf("redistest: CLUSTER SET-CONFIG-EPOCH on %s: %v", n.Addr(), err)
		}
		lo := i * numSlots / masters
		hi := (i+1)*numSlots/masters - 1
		if err := n.admin.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", lo, hi).Err(); err != nil {
			t.Fatalf("redistest: CLUSTER ADDSLOTSRANGE %d %d on %s: %v", lo, hi, n.Addr(), err)
		}
	}
	// Every pair meets directly: waiting for gossip to introduce the nodes
	// to each other costs seconds.
	for i, a := range c.Nodes {
		for _, b := range c.Nodes[i+1:] {
			if err := a.admin.ClusterMeet(ctx, "127.0.0.1", strconv.Itoa(b.Port)).Err(); err != nil {
				t.Fatalf("redistest: CLUSTER MEET %s on %s: %v", b.Addr(), a.Addr(), err)
			}
		}
	}
	c.WaitStable(t)
	return c
}

// Addrs returns the nodes' addresses, in the order of Nodes.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		addrs[i] = n.Addr()
	}
	return addrs
}

// Client returns a cluster client seeded with every node, closed in t.Cleanup.
func (c *Cluster) Client(t testing.TB) *redis.ClusterClient {
	t.Helper()
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	t.Cleanup(func() { cc.Close() })
	return cc
}

// WaitStable waits until every running node reports cluster_state:ok, knows
// every node, and agrees with the others on the owner of every slot.
func (c *Cluster) WaitStable(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(clusterTimeout)
	delay := 10 * time.Millisecond
	for {
		err := c.stable()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: cluster not stable after %v: %v", clusterTimeout, err)
		}
		time.Sleep(delay)
		delay = min(2*delay, 100*time.Millisecond)
	}
}

func (c *Cluster) stable() error {
	ctx, cancel := opCtx()
	defer cancel()
	var first []string
	for i, n := range c.Nodes {
		if n.PID() == 0 {
			continue
		}
		info, err := n.admin.ClusterInfo(ctx).Result()
		if err != nil {
			return fmt.Errorf("node %d: CLUSTER INFO: %v", i, err)
		}
		fields := infoFields(info)
		if fields["cluster_state"] != "ok" {
			return fmt.Errorf("node %d: cluster_state:%s", i, fields["cluster_state"])
		}
		if fields["cluster_known_nodes"] != strconv.Itoa(len(c.Nodes)) {
			return fmt.Errorf("node %d: cluster_known_nodes:%s", i, fields["cluster_known_nodes"])
		}
		owners, err := slotOwners(ctx, n.admin)
		if err != nil {
			return fmt.Errorf("node %d: %v", i, err)
		}
		if first == nil {
			first = owners
			continue
		}
		for slot := range owners {
			if owners[slot] != first[slot] {
				return fmt.Errorf("node %d says slot %d is on %q, another node says %q", i, slot, owners[slot], first[slot])
			}
		}
	}
	return nil
}

// OwnerOf returns the index in Nodes of the node serving slot, as the first
// running node's CLUSTER SLOTS reports it.
func (c *Cluster) OwnerOf(t testing.TB, slot int) int {
	t.Helper()
	ctx, cancel := opCtx()
	defer cancel()
	var lastErr error
	for _, n := range c.Nodes {
		if n.PID() == 0 {
			continue
		}
		owners, err := slotOwners(ctx, n.admin)
		if err != nil {
			lastErr = err
			continue
		}
		return c.index(t, owners[slot], slot)
	}
	t.Fatalf("redistest: no node answered CLUSTER SLOTS: %v", lastErr)
	return -1
}

func (c *Cluster) index(t testing.TB, addr string, slot int) int {
	t.Helper()
	for i, n := range c.Nodes {
		if n.Addr() == addr {
			return i
		}
	}
	t.Fatalf("redistest: slot %d is served by %q, not a node of this cluster %v", slot, addr, c.Addrs())
	return -1
}

// MigrateSlot moves slot and all its keys from its current owner to
// Nodes[to] the way redis-cli --cluster reshard does: CLUSTER SETSLOT
// IMPORTING on the target, MIGRATING on the source, CLUSTER GETKEYSINSLOT and
// MIGRATE ... KEYS in batches until the slot is empty on the source, then
// CLUSTER SETSLOT NODE on the target, the source and every other node.
// Clients running commands on the slot meanwhile get ASK and MOVED
// redirections, which go-redis follows.
func (c *Cluster) MigrateSlot(t testing.TB, slot int, to int) {
	t.Helper()
	c.MigrateSlotMidway(t, slot, to, nil)
}

// MigrateSlotMidway is MigrateSlot, calling midway (when not nil) once,
// after the first batch of keys has moved: while the slot is split between
// the two nodes and marked migrating and importing, if it holds more than
// one batch (100 keys).
func (c *Cluster) MigrateSlotMidway(t testing.TB, slot int, to int, midway func()) {
	t.Helper()
	if slot < 0 || slot >= numSlots || to < 0 || to >= len(c.Nodes) {
		t.Fatalf("redistest: MigrateSlot(%d, %d): out of range", slot, to)
	}
	from := c.OwnerOf(t, slot)
	if from == to {
		return
	}
	src, dst := c.Nodes[from], c.Nodes[to]
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	srcID := nodeID(t, ctx, src)
	dstID := nodeID(t, ctx, dst)

	do := func(n *Server, args ...any) any {
		t.Helper()
		v, err := n.admin.Do(ctx, args...).Result()
		if err != nil {
			t.Fatalf("redistest: %v on %s: %v", args, n.Addr(), err)
		}
		return v
	}
	do(dst, "CLUSTER", "SETSLOT", slot, "IMPORTING", srcID)
	do(src, "CLUSTER", "SETSLOT", slot, "MIGRATING", dstID)
	for {
		keys, err := src.admin.ClusterGetKeysInSlot(ctx, slot, migrateBatch).Result()
		if err != nil {
			t.Fatalf("redistest: CLUSTER GETKEYSINSLOT %d on %s: %v", slot, src.Addr(), err)
		}
		if len(keys) == 0 {
			break
		}
		args := []any{"MIGRATE", "127.0.0.1", dst.Port, "", 0, 5000, "KEYS"}
		for _, k := range keys {
			args = append(args, k)
		}
		do(src, args...)
		if midway != nil {
			midway()
			midway = nil
		}
	}
	// Target first: it bumps its config epoch and claims the slot; then the
	// source stops answering ASK and starts answering MOVED; then the rest
	// learn it directly instead of waiting for gossip.
	do(dst, "CLUSTER", "SETSLOT", slot, "NODE", dstID)
	do(src, "CLUSTER", "SETSLOT", slot, "NODE", dstID)
	for i, n := range c.Nodes {
		if i == from || i == to || n.PID() == 0 {
			continue
		}
		do(n, "CLUSTER", "SETSLOT", slot, "NODE", dstID)
	}
	c.WaitStable(t)
	if got := c.OwnerOf(t, slot); got != to {
		t.Fatalf("redistest: slot %d is on node %d after migrating it to node %d", slot, got, to)
	}
}

// KeySlot returns the hash slot of key, as the cluster computes it
// (CLUSTER KEYSLOT).
func (c *Cluster) KeySlot(t testing.TB, key string) int {
	t.Helper()
	ctx, cancel := opCtx()
	defer cancel()
	for _, n := range c.Nodes {
		if n.PID() == 0 {
			continue
		}
		slot, err := n.admin.ClusterKeySlot(ctx, key).Result()
		if err != nil {
			t.Fatalf("redistest: CLUSTER KEYSLOT on %s: %v", n.Addr(), err)
		}
		return int(slot)
	}
	t.Fatalf("redistest: CLUSTER KEYSLOT: no node running")
	return -1
}

func nodeID(t testing.TB, ctx context.Context, n *Server) string {
	t.Helper()
	id, err := n.admin.Do(ctx, "CLUSTER", "MYID").Text()
	if err != nil {
		t.Fatalf("redistest: CLUSTER MYID on %s: %v", n.Addr(), err)
	}
	return id
}

// slotOwners returns the address serving each slot ("" if none) according
// to the CLUSTER SLOTS of the node behind rdb.
func slotOwners(ctx context.Context, rdb *redis.Client) ([]string, error) {
	ranges, err := rdb.ClusterSlots(ctx).Result()
	if err != nil {
		return nil, fmt.Errorf("CLUSTER SLOTS: %v", err)
	}
	owners := make([]string, numSlots)
	for _, r := range ranges {
		if len(r.Nodes) == 0 || r.Start < 0 || r.End >= numSlots || r.Start > r.End {
			return nil, fmt.Errorf("CLUSTER SLOTS: bad range %+v", r)
		}
		addr := r.Nodes[0].Addr
		if host, port, err := net.SplitHostPort(addr); err == nil && host == "" {
			addr = net.JoinHostPort("127.0.0.1", port)
		}
		for s := r.Start; s <= r.End; s++ {
			owners[s] = addr
		}
	}
	for s, o := range owners {
		if o == "" {
			return nil, fmt.Errorf("slot %d has no owner", s)
		}
	}
	return owners, nil
}

// infoFields parses "name:value" lines of an INFO-style reply.
func infoFields(info string) map[string]string {
	m := make(map[string]string)
	for _, line := range strings.Split(info, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			m[k] = v
		}
	}
	return m
}
