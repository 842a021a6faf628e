package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// wantSettings are the Redis settings the guarantees rest on (README,
// "Deploying with Redis"), with what goes wrong without each.
var wantSettings = []struct{ name, want, why string }{
	{"maxmemory-policy", "noeviction", "any other policy lets Redis drop keys under memory pressure (volatile-* too: request ids)"},
	{"appendonly", "yes", "without the append-only file a restart loses acknowledged writes"},
	{"appendfsync", "always", "a crash loses acknowledged writes not yet on disk"},
}

// globalKeys exist once per deployment, on whichever node serves their
// slots.
var globalKeys = []string{partitionsKey, secretKey, layoutKey}

// fixedKeys is how many persistent keys a partition holds besides those
// its counter counts: the marker, and once written, sequence, chain head
// and change stream (XADD with MAXLEN never removes the stream itself).
func fixedKeys(seq uint64) int64 {
	if seq == 0 {
		return 1
	}
	return 4
}

// auditAttempts is how many reads Audit makes of a node to find its
// counters still.
const auditAttempts = 3

// AuditStats are counters for metrics.
type AuditStats struct {
	// Inexact counts node rounds in which writes moved the counters in every
	// attempt: judged against bounds, which catch fewer losses.
	Inexact atomic.Uint64
	// Skipped counts node rounds whose key count was not judged: slots of
	// the store were moving between Cluster nodes.
	Skipped atomic.Uint64
}

// auditor is what Audit keeps between rounds.
type auditor struct {
	noInfo   bool // INFO is denied, and the operator said so
	attempts int  // auditAttempts; fewer in tests, to judge by bounds
	// Cluster slots of each partition and of the global keys.
	partSlots, globalSlots []int
	stats                  AuditStats

	mu sync.Mutex
	// evictions are the baselines by run_id: a Sentinel failback returns
	// to a process already seen, whose count must not start again.
	evictions map[string]int64
	runIDs    map[string]string // each node address's last run_id
	warned    map[string]bool   // nodes whose extra keys were reported
	warnings  []string          // not yet taken by Warnings
}

// Warnings returns, once each, what Audit found that breaks no guarantee
// but that an operator should know: keys on a node that consentd did not
// write (the database should be dedicated to consentd; foreign keys could
// also hide a lost one from the count). For the log.
func (s *Redis) Warnings() []string {
	s.audit.mu.Lock()
	defer s.audit.mu.Unlock()
	w := s.audit.warnings
	s.audit.warnings = nil
	return w
}

// AuditStats returns the live counters.
func (s *Redis) AuditStats() *AuditStats { return &s.audit.stats }

// nodeRead is one pipelined read of a master.
type nodeRead struct {
	settings    map[string]string // nil when not read
	settingsErr error             // CONFIG GET refused
	info        map[string]string // INFO server, stats and keyspace; nil when not read
	infoErr     error             // INFO refused
	// before and after are the partitions' counters read around INFO.
	before, after []counter
	// views are the node's own CLUSTER NODES line before and after.
	views [2]string
	moved bool // a counter's key is no longer served here
}

// counter is what Audit reads of a partition: its marker's count of
// created keys, and its sequence.
type counter struct {
	keys, seq uint64
	marker    bool
}

// denied says whether err is Redis refusing a command to this user (ACL)
// or not knowing it (renamed).
func denied(err error) bool {
	msg := err.Error()
	return strings.HasPrefix(msg, "NOPERM") || strings.Contains(msg, "unknown command")
}

func moved(err error) bool {
	msg := err.Error()
	return strings.HasPrefix(msg, "MOVED") || strings.HasPrefix(msg, "ASK") || strings.HasPrefix(msg, "TRYAGAIN")
}

// readNode reads, in one pipeline to node: its slots (view), partition
// counters, its settings, INFO, the counters again, its slots again.
func (s *Redis) readNode(ctx context.Context, node *redis.Client, parts []uint32, view, settings, info bool) (*nodeRead, error) {
	type counterCmds struct {
		keys, seq *redis.StringCmd
	}
	var (
		views         [2]*redis.StringCmd
		conf          *redis.MapStringStringCmd
		inf           *redis.StringCmd
		before, after []counterCmds
	)
	counters := func(pipe redis.Pipeliner) []counterCmds {
		cmds := make([]counterCmds, len(parts))
		for i, p := range parts {
			cmds[i] = counterCmds{pipe.HGet(ctx, markerKey(p), "keys"), pipe.Get(ctx, seqKey(p))}
		}
		return cmds
	}
	// Each command's own error says what failed (a connection that failed
	// fails them all alike), so Pipelined's first error is not needed.
	_, _ = node.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		if view {
			views[0] = pipe.ClusterNodes(ctx)
		}
		before = counters(pipe)
		if settings {
			args := []any{"config", "get"}
			for _, w := range wantSettings {
				args = append(args, w.name)
			}
			conf = redis.NewMapStringStringCmd(ctx, args...)
			pipe.Process(ctx, conf)
		}
		if info {
			inf = pipe.Info(ctx, "server", "stats", "keyspace")
		}
		after = counters(pipe)
		if view {
			views[1] = pipe.ClusterNodes(ctx)
		}
		return nil
	})
	r := &nodeRead{}
	if conf != nil {
		switch v, err := conf.Result(); {
		case err == nil:
			r.settings = v
		case denied(err):
			r.settingsErr = err
		default:
			return nil, err
		}
	}
	if inf != nil {
		switch v, err := inf.Result(); {
		case err == nil:
			r.info = infoFields(v)
		case denied(err):
			r.infoErr = err
		default:
			return nil, err
		}
	}
	for i, v := range views {
		if v == nil {
			continue
		}
		txt, err := v.Result()
		if err != nil {
			return nil, err
		}
		r.views[i] = myself(txt)
	}
	read := func(cmds []counterCmds) ([]counter, error) {
		out := make([]counter, len(cmds))
		for i, c := range cmds {
			for _, f := range []struct {
				cmd *redis.StringCmd
				n   *uint64
			}{{c.keys, &out[i].keys}, {c.seq, &out[i].seq}} {
				v, err := f.cmd.Result()
				switch {
				case errors.Is(err, redis.Nil):
					continue
				case err != nil && moved(err):
					r.moved = true
					continue
				case err != nil:
					return nil, err
				}
				if *f.n, err = strconv.ParseUint(v, 10, 64); err != nil {
					return nil, fmt.Errorf("%s or %s is not a number", markerKey(parts[i]), seqKey(parts[i]))
				}
			}
			out[i].marker = c.keys.Err() == nil
		}
		return out, nil
	}
	var err error
	if r.before, err = read(before); err != nil {
		return nil, err
	}
	if r.after, err = read(after); err != nil {
		return nil, err
	}
	return r, nil
}

// infoFields parses the "name:value" lines of INFO.
func infoFields(info string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(info, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			m[k] = v
		}
	}
	return m
}

// persistentKeys is the number of keys without a TTL in database db, from
// INFO keyspace ("db0:keys=12,expires=3,avg_ttl=0"; no line when empty).
func persistentKeys(info map[string]string, db int) (int64, error) {
	line, ok := info["db"+strconv.Itoa(db)]
	if !ok {
		return 0, nil
	}
	var keys, expires int64 = -1, -1
	for _, f := range strings.Split(line, ",") {
		k, v, _ := strings.Cut(f, "=")
		n, err := strconv.ParseInt(v, 10, 64)
		switch {
		case k == "keys" && err == nil:
			keys = n
		case k == "expires" && err == nil:
			expires = n
		}
	}
	if keys < 0 || expires < 0 {
		return 0, fmt.Errorf("INFO keyspace: cannot read %q", line)
	}
	return keys - expires, nil
}

// badSettings names each wrong setting of a node.
func badSettings(addr string, got map[string]string) []string {
	var out []string
	for _, w := range wantSettings {
		if v := got[w.name]; v != w.want {
			out = append(out, fmt.Sprintf("%s is %q on %s, consentd needs %s: %s", w.name, v, addr, w.want, w.why))
		}
	}
	return out
}

func settingNames() string {
	names := make([]string, len(wantSettings))
	for i, w := range wantSettings {
		names[i] = w.name + " " + w.want
	}
	return strings.Join(names, ", ")
}

const settingsHint = "consentd refuses writes and answers UNAVAILABLE until it is set back (CONFIG SET, and in redis.conf)"

// openAudit checks every master's settings, finds out what this user may
// read, and records each node's evicted_keys.
func (s *Redis) openAudit(ctx context.Context) error {
	s.audit.attempts = auditAttempts
	s.audit.evictions = map[string]int64{}
	s.audit.runIDs = map[string]string{}
	s.audit.warned = map[string]bool{}
	if _, ok := s.rdb.(*redis.ClusterClient); ok {
		s.audit.partSlots = make([]int, s.cfg.Partitions)
		for p := range s.cfg.Partitions {
			s.audit.partSlots[p] = keySlot(tag(p))
		}
		for _, k := range globalKeys {
			s.audit.globalSlots = append(s.audit.globalSlots, keySlot(k))
		}
	}
	settings := !s.cfg.OperatorChecksSettings
	var (
		mu                          sync.Mutex
		bad                         []string
		configOff, infoOff, viewOff error
	)
	err := s.forEachNode(ctx, func(ctx context.Context, node *redis.Client) error {
		r, err := s.readNode(ctx, node, nil, false, settings, true)
		if err != nil {
			return err
		}
		addr := addrOf(ctx, node)
		// Audit reads each Cluster master's own slots to count its keys: a
		// user denied it would start and then fail every Audit.
		var viewErr error
		if s.audit.partSlots != nil {
			if err := node.ClusterNodes(ctx).Err(); err != nil && denied(err) {
				viewErr = err
			} else if err != nil {
				return err
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if viewErr != nil {
			viewOff = fmt.Errorf("%s: %v", addr, viewErr)
		}
		if r.settingsErr != nil {
			configOff = fmt.Errorf("%s: %v", addr, r.settingsErr)
		} else if r.settings != nil {
			bad = append(bad, badSettings(addr, r.settings)...)
		}
		if r.infoErr != nil {
			infoOff = fmt.Errorf("%s: %v", addr, r.infoErr)
			return nil
		}
		s.noteEvictions(addr, r.info)
		return nil
	})
	if err != nil {
		return redisErr(err)
	}
	var off []string
	if configOff != nil {
		off = append(off, fmt.Sprintf("CONFIG GET is renamed or denied (%v), so consentd cannot read %s", configOff, settingNames()))
	}
	if infoOff != nil {
		off = append(off, fmt.Sprintf("INFO is denied (%v), so consentd cannot see keys evicted or deleted", infoOff))
	}
	if viewOff != nil && infoOff == nil {
		return fmt.Errorf("store: redis: CLUSTER NODES is denied (%v), so consentd cannot count each master's keys: allow consentd's Redis user cluster|nodes", viewOff)
	}
	switch {
	case len(off) > 0 && !s.cfg.OperatorChecksSettings:
		return fmt.Errorf("store: redis: %s; allow consentd's Redis user CONFIG GET and INFO, or check %s yourself on every master and start consentd with --redis-operator-checks-settings "+
			"(where INFO is denied, consentd then checks only the store's markers and sequences)", strings.Join(off, "; "), settingNames())
	case len(bad) > 0:
		return faultf(ErrSettings, "store: redis: %s", strings.Join(bad, "; "))
	}
	s.audit.noInfo = infoOff != nil
	return nil
}

// noteEvictions returns how many keys node addr evicted since consentd
// first saw it (0 at the first sight, which sets the baseline).
func (s *Redis) noteEvictions(addr string, info map[string]string) (evicted, since int64) {
	runID := info["run_id"]
	n, _ := strconv.ParseInt(info["evicted_keys"], 10, 64)
	s.audit.mu.Lock()
	defer s.audit.mu.Unlock()
	b, ok := s.audit.evictions[runID]
	last, known := s.audit.runIDs[addr]
	switch {
	case !ok && known && last != runID:
		// Restarted: its counters began again at 0, so everything it
		// counts happened since.
		b = 0
	case !ok:
		// A process first seen (at open, or a master new since: a
		// promoted replica, which does not evict): what it evicted before
		// is not known to concern this store; the key count judges that.
		b = n
	case n < b:
		// CONFIG RESETSTAT: whatever it dropped meanwhile, the key count
		// still sees.
		b = n
	}
	s.audit.evictions[runID] = b
	s.audit.runIDs[addr] = runID
	return n, n - b
}

// forEachNode runs fn on every master: the server itself, or each master
// of a Cluster in parallel.
func (s *Redis) forEachNode(ctx context.Context, fn func(context.Context, *redis.Client) error) error {
	switch c := s.rdb.(type) {
	case *redis.ClusterClient:
		return c.ForEachMaster(ctx, fn)
	case *redis.Client:
		return fn(ctx, c)
	}
	return fmt.Errorf("store: unsupported redis client %T", s.rdb)
}

// nodeVerdict is what Audit found on one master.
type nodeVerdict struct {
	lost, settings []string
	err            error
}

// Audit checks what CheckIdentity cannot see, on every master: (a) the
// settings the guarantees rest on (skipped when the operator checks them),
// and (b) keys that vanished without a write: evicted_keys must not grow,
// and the node must hold as many persistent keys as the write script
// counted in the partitions it serves, plus the fixed keys. It returns
// nil; an error wrapping ErrSettings naming each wrong setting, its value,
// the value needed and the node (it clears when fixed); one wrapping
// ErrStoreLost naming the node and how many keys are missing (it holds for
// the process); or one wrapping consent.ErrUnavailable when a node does
// not answer. More keys than counted is no error: see Warnings. Meant to
// run every 2 s.
func (s *Redis) Audit(ctx context.Context) error {
	if err := s.lostErr(); err != nil {
		return err
	}
	settings, info := !s.cfg.OperatorChecksSettings, !s.audit.noInfo
	if !settings && !info {
		return nil
	}
	var (
		mu       sync.Mutex
		verdicts []nodeVerdict
	)
	err := s.forEachNode(ctx, func(ctx context.Context, node *redis.Client) error {
		v := s.auditNode(ctx, node, settings, info)
		mu.Lock()
		verdicts = append(verdicts, v)
		mu.Unlock()
		return nil
	})
	if err != nil {
		return unavailable(redisErr(err))
	}
	var lost, bad []string
	for _, v := range verdicts {
		lost = append(lost, v.lost...)
		bad = append(bad, v.settings...)
	}
	switch {
	case len(lost) > 0:
		if len(bad) > 0 {
			lost = append(lost, bad...)
		}
		return s.fail(lostf("%s", strings.Join(lost, "; ")))
	case len(bad) > 0:
		return faultf(ErrSettings, "store: redis: %s; %s", strings.Join(bad, "; "), settingsHint)
	}
	for _, v := range verdicts {
		if v.err != nil {
			return unavailable(redisErr(v.err))
		}
	}
	return nil
}

func (s *Redis) auditNode(ctx context.Context, node *redis.Client, settings, info bool) (v nodeVerdict) {
	addr := addrOf(ctx, node)
	// The partitions and global keys this node serves, by its own account.
	var (
		parts   []uint32
		globals int64
		view    string
		count   = info
	)
	if s.audit.partSlots == nil {
		for p := range s.cfg.Partitions {
			parts = append(parts, p)
		}
		globals = int64(len(globalKeys))
	} else if info {
		txt, err := node.ClusterNodes(ctx).Result()
		if err != nil && denied(err) {
			v.settings = append(v.settings, fmt.Sprintf("CLUSTER NODES is refused on %s (%v): consentd cannot count the keys there", addr, err))
			return v
		}
		if err != nil {
			v.err = err
			return v
		}
		view = myself(txt)
		owned, moving := parseSlots(view)
		for p, slot := range s.audit.partSlots {
			if moving[slot] {
				count = false
			}
			if owned(slot) {
				parts = append(parts, uint32(p))
			}
		}
		for _, slot := range s.audit.globalSlots {
			if moving[slot] {
				count = false
			}
			if owned(slot) {
				globals++
			}
		}
	}
	var r *nodeRead
	for range s.audit.attempts {
		var err error
		r, err = s.readNode(ctx, node, parts, view != "", settings, info)
		if err != nil {
			v.err = err
			return v
		}
		if r.moved || r.views[0] != view || r.views[1] != view {
			count = false // slots moved: judge the next round
			break
		}
		if still(r.before, r.after) {
			break
		}
	}
	if r.settingsErr != nil {
		v.settings = append(v.settings, fmt.Sprintf("cannot read %s on %s: CONFIG GET is refused (%v)", settingNames(), addr, r.settingsErr))
	} else if r.settings != nil {
		v.settings = badSettings(addr, r.settings)
	}
	if r.infoErr != nil {
		// Allowed at open: without it the eviction and key checks would
		// silently stop.
		v.settings = append(v.settings, fmt.Sprintf("INFO is refused on %s (%v): consentd cannot see keys evicted or deleted there", addr, r.infoErr))
		return v
	}
	if r.info == nil {
		return v
	}
	if n, since := s.noteEvictions(addr, r.info); since > 0 {
		v.lost = append(v.lost, fmt.Sprintf("%d keys evicted on %s since consentd opened the store (INFO evicted_keys %d)", since, addr, n))
	}
	if !count {
		s.audit.stats.Skipped.Add(1)
		return v
	}
	if !still(r.before, r.after) {
		s.audit.stats.Inexact.Add(1)
	}
	// INFO is read between the two reads of the counters, and neither is
	// atomic with writes (MULTI cannot span slots on a Cluster; Redis runs
	// a pipeline without interleaving other clients only as far as it
	// arrives in one read, some 16 KiB). Each write changes a partition's keys and counter
	// together in one script, and counters and sequences only grow (an
	// erasure deletes a history and recreates it in the same script), so
	// the keys there at INFO's moment number at least what the first read
	// counted and at most what the second did: fewer is a loss, more are
	// foreign, whether or not writes went on. Only a round whose counters
	// stood still is exact; under writes the bounds may hide a loss, and the
	// next still round finds it.
	lo, hi := globals, globals
	for i, p := range parts {
		if !r.before[i].marker || !r.after[i].marker {
			v.lost = append(v.lost, fmt.Sprintf("partition %d's marker %s is missing on %s", p, markerKey(p), addr))
			continue
		}
		lo += int64(r.before[i].keys) + fixedKeys(r.before[i].seq)
		hi += int64(r.after[i].keys) + fixedKeys(r.after[i].seq)
	}
	got, err := persistentKeys(r.info, node.Options().DB)
	if err != nil {
		v.err = err
		return v
	}
	switch {
	case got < lo:
		v.lost = append(v.lost, fmt.Sprintf("%d keys missing on %s: evicted or deleted (consentd wrote %d keys without expiry there, Redis holds %d)", lo-got, addr, lo, got))
	case got > hi:
		s.audit.mu.Lock()
		if !s.audit.warned[addr] {
			s.audit.warned[addr] = true
			s.audit.warnings = append(s.audit.warnings, fmt.Sprintf(
				"redis %s holds %d keys without expiry that consentd did not write: the database should be dedicated to consentd (foreign keys could also hide a lost one from the key count)", addr, got-hi))
		}
		s.audit.mu.Unlock()
	}
	return v
}

// still says whether two reads of the counters agree.
func still(a, b []counter) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// myself returns the slot fields of the node's own line in CLUSTER NODES:
// "0-5460 [5461->-<id>]".
func myself(nodes string) string {
	for _, line := range strings.Split(nodes, "\n") {
		f := strings.Fields(line)
		if len(f) >= 8 && strings.Contains(f[2], "myself") {
			return strings.Join(f[8:], " ")
		}
	}
	return ""
}

// parseSlots reads the slots a node serves and those it is migrating or
// importing ("[5461->-<id>]", "[5461-<-<id>]") from its own slot fields.
func parseSlots(fields string) (owned func(slot int) bool, moving map[int]bool) {
	var ranges [][2]int
	moving = map[int]bool{}
	for _, f := range strings.Fields(fields) {
		if strings.HasPrefix(f, "[") {
			n, _, _ := strings.Cut(f[1:], "-")
			if slot, err := strconv.Atoi(n); err == nil {
				moving[slot] = true
			}
			continue
		}
		lo, hi, isRange := strings.Cut(f, "-")
		if !isRange {
			hi = lo
		}
		a, err1 := strconv.Atoi(lo)
		b, err2 := strconv.Atoi(hi)
		if err1 == nil && err2 == nil {
			ranges = append(ranges, [2]int{a, b})
		}
	}
	return func(slot int) bool {
		for _, r := range ranges {
			if r[0] <= slot && slot <= r[1] {
				return true
			}
		}
		return false
	}, moving
}

// keySlot is the Redis Cluster slot of key: CRC16 (XMODEM) of its hash
// tag, or of the whole key without one, modulo 16384.
func keySlot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc ^= uint16(key[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % 16384
}
